package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Recorder is what a typed stub of the stress test calls.
type Recorder interface {
	Record(ctx context.Context, id string) (string, error)
}

type recorderStub struct{ c remoteable.Caller }

func (s *recorderStub) TetherCaller() remoteable.Caller { return s.c }
func (s *recorderStub) Record(ctx context.Context, id string) (string, error) {
	var r string
	err := s.c.Call(ctx, "Record", &r, id)
	return r, err
}

func init() {
	remoteable.RegisterStub[Recorder](func(c remoteable.Caller) Recorder { return &recorderStub{c} })
}

// onceSvc writes every run of its non-idempotent methods to a ledger:
// Record, Open (a model received as a mirror), and its children's Record.
// Child and Desk are idempotent, so the references they return are
// obtained again after an outage.
type onceSvc struct {
	remoteable.Referenceable
	l     *ledger
	model *cache.Map[string, int]
}

func (*onceSvc) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Child": {Idempotent: true}, "Desk": {Idempotent: true}}
}

func (s *onceSvc) Record(ctx context.Context, id string) (string, error) { s.l.ran(id); return id, nil }

func (s *onceSvc) Open(ctx context.Context, id string) (*cache.Map[string, int], error) {
	s.l.ran(id)
	return s.model, nil
}

func (s *onceSvc) Child(ctx context.Context, name string) (*onceChild, error) {
	return &onceChild{l: s.l}, nil
}

func (s *onceSvc) Desk(ctx context.Context) (Recorder, error) { return &onceChild{l: s.l}, nil }

type onceChild struct {
	remoteable.Referenceable
	l *ledger
}

func (c *onceChild) Record(ctx context.Context, id string) (string, error) {
	c.l.ran(id)
	return id, nil
}

// TestEverySuccessRanOnceThroughDrainsAndCuts: callers share one
// *remote.Ref, a Ref derived from it, a typed stub and mirrors received
// through it, while the one server behind a proxy is drained and
// restarted, and the proxy cuts every link, in turn. Every call that
// succeeded ran exactly once on the servers; one that failed ran at most
// once, and one that ran and failed says so (ErrConnectionLost) unless it
// is a mirror whose subscription was lost after the call ran.
func TestEverySuccessRanOnceThroughDrainsAndCuts(t *testing.T) {
	leakcheck.Check(t)
	l := &ledger{runs: map[string]int{}}
	model := cache.NewMap[string, int]()
	require.NoError(t, model.Set("k", 1))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	var srvMu sync.Mutex
	var srv *broker.Server
	var served chan error
	start := func(ln net.Listener) {
		reg := registry.New()
		require.NoError(t, reg.Register("svc", &onceSvc{l: l, model: model}))
		s, done := broker.NewServer(reg), make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		srvMu.Lock()
		srv, served = s, done
		srvMu.Unlock()
	}
	stopWith := func(how func(*broker.Server) error) {
		srvMu.Lock()
		s, done := srv, served
		srvMu.Unlock()
		require.NoError(t, how(s))
		<-done
	}
	start(ln)
	t.Cleanup(func() { stopWith(func(s *broker.Server) error { s.Close(); return nil }) })
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })

	ctx := testkit.Ctx(t, 2*time.Minute)
	cl := lasting(t, proxy.Addr())
	svc, err := cl.Registry().Lookup(ctx, "svc")
	require.NoError(t, err)
	var child *remote.Ref
	require.NoError(t, svc.Call(ctx, "Child", &child, "c"))
	var desk Recorder
	require.NoError(t, svc.Call(ctx, "Desk", &desk))

	type outcome struct {
		kind, id string
		err      error
	}
	var (
		mu   sync.Mutex
		outs []outcome
		ok   atomic.Int64
		wg   sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				cctx, cancel := context.WithTimeout(remote.WaitForLink(ctx), 20*time.Second)
				var kind string
				var err error
				var s string
				switch (g + i) % 4 {
				case 0:
					kind, err = "Record", svc.Call(cctx, "Record", &s, id)
				case 1:
					kind, err = "child.Record", child.Call(cctx, "Record", &s, id)
				case 2:
					kind = "stub.Record"
					s, err = desk.Record(cctx, id)
				case 3:
					kind = "Open"
					var mir *cache.Mirror[string, int]
					err = svc.Call(cctx, "Open", &mir, id)
					if mir != nil {
						mir.Close()
					}
					s = id
				}
				cancel()
				if err == nil && s != id {
					err = fmt.Errorf("%s(%q) returned %q", kind, id, s)
				}
				if err == nil {
					ok.Add(1)
				}
				mu.Lock()
				outs = append(outs, outcome{kind, id, err})
				mu.Unlock()
			}
		}()
	}
	progress := func(what string) {
		before := ok.Load()
		testkit.Eventually(t, what, func() bool { return ok.Load() >= before+50 })
	}
	for round := range 4 {
		progress(fmt.Sprintf("calls go through before round %d's drain", round))
		stopWith(func(s *broker.Server) error {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			return s.Shutdown(sctx)
		})
		ln, err := net.Listen("tcp", addr)
		require.NoError(t, err)
		start(ln)
		progress(fmt.Sprintf("calls go through before round %d's cut", round))
		proxy.Reset()
	}
	progress("calls go through after the last cut")
	close(stop)
	wg.Wait()

	failed := map[string]int{}
	for _, o := range outs {
		n := l.count(o.id)
		if o.err == nil {
			assert.Equal(t, 1, n, "%s %s succeeded and ran once", o.kind, o.id)
			continue
		}
		failed[o.kind]++
		assert.LessOrEqual(t, n, 1, "%s %s failed and ran at most once: %v", o.kind, o.id, o.err)
		if n == 1 && o.kind != "Open" {
			assert.ErrorIs(t, o.err, broker.ErrConnectionLost, "%s %s ran and failed", o.kind, o.id)
		}
		if !errors.Is(o.err, broker.ErrConnectionLost) {
			t.Logf("%s %s (ran %d): %v", o.kind, o.id, n, o.err)
		}
	}
	l.mu.Lock()
	runs := len(l.runs)
	l.mu.Unlock()
	assert.LessOrEqual(t, runs, len(outs), "the servers ran no call that no caller made")
	t.Logf("%d calls, %d succeeded, failed by kind: %v", len(outs), ok.Load(), failed)
}
