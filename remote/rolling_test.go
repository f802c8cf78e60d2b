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
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// ledger counts, across a whole fleet and its restarts, how many times
// each call id ran.
type ledger struct {
	mu   sync.Mutex
	runs map[string]int
}

// ran records one run of id.
func (l *ledger) ran(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[id]++
}

// count returns how many times id ran.
func (l *ledger) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.runs[id]
}

// rollingReplica is what each server of a rolling fleet publishes as
// "svc": Echo is idempotent, Record is not and writes every run to the
// shared ledger.
type rollingReplica struct {
	remoteable.Referenceable
	name   string
	ledger *ledger
}

// RemoteMethods declares Echo safe to repeat.
func (*rollingReplica) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Echo": {Idempotent: true}}
}

// Echo returns s.
func (r *rollingReplica) Echo(ctx context.Context, s string) (string, error) { return s, nil }

// Record notes a run of id, then takes a moment, so that some calls are
// always running when a server stops.
func (r *rollingReplica) Record(ctx context.Context, id string) (string, error) {
	r.ledger.ran(id)
	time.Sleep(time.Millisecond)
	return r.name, nil
}

// rollingServer is one server of the fleet, restarted on the same address.
type rollingServer struct {
	name   string
	addr   string
	ledger *ledger

	mu   sync.Mutex
	srv  *broker.Server
	done chan error
}

// start serves a new server on s.addr (a free port the first time).
func (s *rollingServer) start(t *testing.T) {
	t.Helper()
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	reg := registry.New()
	require.NoError(t, reg.Register("svc", &rollingReplica{name: s.name, ledger: s.ledger}))
	srv, done := broker.NewServer(reg), make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	s.mu.Lock()
	s.addr, s.srv, s.done = ln.Addr().String(), srv, done
	s.mu.Unlock()
}

// stop stops the running server with how (Shutdown or Close) and waits
// for Serve to return.
func (s *rollingServer) stop(how func(*broker.Server) error) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := how(srv)
	<-done
	return err
}

// rollingFleet starts n servers sharing one ledger, closed when the test
// ends.
func rollingFleet(t *testing.T, n int, l *ledger) ([]*rollingServer, []remote.Endpoint) {
	fleet := make([]*rollingServer, n)
	eps := make([]remote.Endpoint, n)
	for i := range fleet {
		s := &rollingServer{name: fmt.Sprintf("s%d", i), ledger: l}
		s.start(t)
		t.Cleanup(func() { s.stop((*broker.Server).Close) })
		fleet[i] = s
		eps[i] = remote.Endpoint{Network: "tcp", Addr: s.addr, ID: s.name}
	}
	return fleet, eps
}

// outcome is what one caller goroutine saw.
type outcome struct {
	method, id string
	err        error
}

// load runs callers (goroutines over clients) that alternate a
// non-idempotent Record with a unique id and an idempotent Echo, until
// stop is closed; it returns the number of calls that succeeded and a
// function that waits for the callers and returns their results.
func load(ctx context.Context, t *testing.T, clients []*remote.Client, perClient int, stop chan struct{}) (*atomic.Int64, func() []outcome) {
	var ok atomic.Int64
	var mu sync.Mutex
	var outs []outcome
	note := func(o outcome) {
		if o.err == nil && o.method == "Echo" {
			ok.Add(1)
		}
		mu.Lock()
		outs = append(outs, o)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for c, cl := range clients {
		svc, err := cl.Registry().Lookup(ctx, "svc")
		require.NoError(t, err)
		for g := range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("c%d-g%d-%d", c, g, i)
					_, err := broker.Call[string](ctx, svc, "Record", id)
					note(outcome{"Record", id, err})
					echo, err := broker.Call[string](ctx, svc, "Echo", id)
					if err == nil && echo != id {
						err = fmt.Errorf("Echo(%q) returned %q", id, echo)
					}
					note(outcome{"Echo", id, err})
				}
			}()
		}
	}
	return &ok, func() []outcome { wg.Wait(); return outs }
}

// rollPace is how long a rollout waits after a restart before it stops
// the next server: longer than the clients' backoff cap (fleetOptions),
// so that the links made by the last failover are steady, as a real
// rollout waits for the restarted server to settle. A link that ends
// sooner counts as a failed attempt (see remote's doc), and the client
// would wait out a backoff, failing calls fast meanwhile.
const rollPace = 300 * time.Millisecond

// rollThrough stops each server of the fleet in turn with how and starts
// it again on its address, waiting for calls to go through before each
// stop and after the last restart.
func rollThrough(t *testing.T, fleet []*rollingServer, ok *atomic.Int64, how func(*broker.Server) error) {
	progress := func(what string) {
		before := ok.Load()
		testkit.Eventually(t, what, func() bool { return ok.Load() >= before+100 })
	}
	for _, s := range fleet {
		time.Sleep(rollPace)
		progress("calls go through before " + s.name + " stops")
		err := s.stop(how)
		require.NoError(t, err, "stopping %s", s.name)
		s.start(t)
	}
	progress("calls go through after the last restart")
}

// rollingClients makes n ConnectAny clients on the fleet, closed when the
// test ends.
func rollingClients(t *testing.T, ctx context.Context, n int, eps []remote.Endpoint) []*remote.Client {
	clients := make([]*remote.Client, n)
	for i := range clients {
		cl, err := remote.ConnectAny(ctx, remote.Static(eps...), fleetOptions()...)
		require.NoError(t, err)
		t.Cleanup(func() { cl.Close() })
		require.NoError(t, cl.WaitConnected(ctx))
		clients[i] = cl
	}
	return clients
}

// TestRollingRestartFailsNoCall puts three servers behind three ConnectAny
// clients whose callers alternate a non-idempotent and an idempotent call,
// then drains (Shutdown) and restarts each server in turn: no call fails,
// and every Record ran exactly once, whether the draining server ran it
// or refused it and another server ran it.
func TestRollingRestartFailsNoCall(t *testing.T) {
	leakcheck.Check(t)
	l := &ledger{runs: map[string]int{}}
	fleet, eps := rollingFleet(t, 3, l)
	ctx := testkit.Ctx(t, 2*time.Minute)
	clients := rollingClients(t, ctx, 3, eps)
	stop := make(chan struct{})
	ok, wait := load(ctx, t, clients, 3, stop)

	drain := func(srv *broker.Server) error {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
	rollThrough(t, fleet, ok, drain)
	close(stop)
	outs := wait()

	records := 0
	for _, o := range outs {
		require.NoError(t, o.err, "%s %s failed", o.method, o.id)
		if o.method == "Record" {
			records++
			assert.Equal(t, 1, l.count(o.id), "Record %s ran once", o.id)
		}
	}
	assert.Len(t, l.runs, records, "the servers ran no Record that no caller made")
}

// TestRollingKillFailsOnlyCallsInFlight does the same with hard kills
// (Close): the idempotent calls never fail, the non-idempotent calls that
// fail were in flight at a kill and fail with ErrConnectionLost, and no
// call ran twice: those that succeeded ran once, those that failed at most
// once.
func TestRollingKillFailsOnlyCallsInFlight(t *testing.T) {
	leakcheck.Check(t)
	l := &ledger{runs: map[string]int{}}
	fleet, eps := rollingFleet(t, 3, l)
	ctx := testkit.Ctx(t, 2*time.Minute)
	clients := rollingClients(t, ctx, 3, eps)
	stop := make(chan struct{})
	ok, wait := load(ctx, t, clients, 3, stop)

	rollThrough(t, fleet, ok, func(srv *broker.Server) error {
		if err := srv.Close(); !errors.Is(err, broker.ErrServerClosed) && err != nil {
			return err
		}
		return nil
	})
	close(stop)
	outs := wait()

	lost := 0
	for _, o := range outs {
		switch {
		case o.err == nil && o.method == "Record":
			assert.Equal(t, 1, l.count(o.id), "Record %s succeeded and ran once", o.id)
		case o.err == nil:
		case o.method == "Record":
			require.ErrorIs(t, o.err, broker.ErrConnectionLost, "Record %s", o.id)
			assert.LessOrEqual(t, l.count(o.id), 1, "Record %s was not repeated", o.id)
			lost++
		default:
			require.NoError(t, o.err, "the idempotent %s %s", o.method, o.id)
		}
	}
	t.Logf("%d calls, %d non-idempotent calls lost at the kills", len(outs), lost)
}
