package remote

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// gaProbe's Pass counts its run, waits for its gate, and fails with an
// error of its own matching broker.ErrGoingAway (a handler passing on a
// refusal it met downstream).
type gaProbe struct {
	remoteable.Referenceable
	runs *atomic.Int64
	gate chan struct{}
	in   chan struct{}
}

func (p *gaProbe) Pass(ctx context.Context) (string, error) {
	p.runs.Add(1)
	p.in <- struct{}{}
	<-p.gate
	return "", fmt.Errorf("its own upstream: %w", broker.ErrGoingAway)
}

// TestHandlersGoingAwayErrorDuringDrainIsNotMadeAgain: a handler running
// on a draining server returns an error of its own that matches
// broker.ErrGoingAway. The call ran: the client must not take it for the
// drain's refusal and make it again on the next link. It does (Pass runs
// twice): the refusal and a handler's error both travel as
// tether.going-away, and refusedDraining cannot tell them apart without a
// change of the wire (a refusal marked as such). Known; skipped until then.
func TestHandlersGoingAwayErrorDuringDrainIsNotMadeAgain(t *testing.T) {
	t.Skip("known: a handler's own ErrGoingAway during a drain is taken for the refusal (see the comment); needs a wire change")
	leakcheck.Check(t)
	var runs atomic.Int64
	var probes []*gaProbe
	mk := func() *registry.Registry {
		reg := registry.New()
		pr := &gaProbe{runs: &runs, gate: make(chan struct{}), in: make(chan struct{}, 4)}
		probes = append(probes, pr)
		_ = reg.Register("p", pr)
		return reg
	}
	ra, rb := mk(), mk()
	a := startServer(t, "127.0.0.1:0", ra)
	b := startServer(t, "127.0.0.1:0", rb)
	proxy := proxyTo(t, a.addr)
	cl := connect(t, proxy.Addr())
	ctx := testkit.Ctx(t, 20*time.Second)
	p, err := cl.Registry().Lookup(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	probeA := probes[0]
	close(probes[1].gate)
	res := make(chan error, 1)
	go func() {
		var s string
		res <- p.Call(WaitForLink(ctx), "Pass", &s)
	}()
	<-probeA.in
	proxy.SetTarget(b.addr)
	shut := make(chan error, 1)
	go func() { shut <- a.srv.Shutdown(ctx) }()
	time.Sleep(200 * time.Millisecond)
	close(probeA.gate)
	err = <-res
	t.Logf("err: %v", err)
	assert.Equal(t, int64(1), runs.Load(), "Pass ran once")
	<-shut
}
