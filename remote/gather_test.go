package remote

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/remoteable"
)

// agent is what each client publishes as its root.
type agent struct {
	remoteable.Referenceable
	name string
	slow bool
}

func (a *agent) Status(ctx context.Context) (string, error) {
	if a.slow {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return a.name + " ok", nil
}

// TestGatherTakesResultsAsTheyCome connects 10 agents, 2 slow and 1 behind a
// black hole, and gathers their status: the 7 others answer before the
// timeout, and the 3 fail with it.
func TestGatherTakesResultsAsTheyCome(t *testing.T) {
	leakcheck.Check(t)
	srv, srvAddr := brokertest.Serve(t, newUsers("hub"))

	hole, err := faultnet.New(srvAddr)
	require.NoError(t, err)
	t.Cleanup(func() { hole.Close() })
	for i := 0; i < 10; i++ {
		addr := srvAddr
		if i == 9 {
			addr = hole.Addr()
		}
		a := &agent{name: fmt.Sprintf("agent-%d", i), slow: i == 7 || i == 8}
		c, err := broker.Dial(testkit.Ctx(t, time.Minute), "tcp", addr, broker.WithName(a.name), broker.WithRoot(a))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(); <-c.Done() })
	}
	require.Eventually(t, func() bool { return len(srv.Conns()) == 10 }, 5*time.Second, time.Millisecond)
	hole.Blackhole(true) // agent-9 is now silently dead

	conns := srv.Conns()
	targets := make([]remoteable.Caller, len(conns))
	for i, c := range conns {
		targets[i] = c.Root()
	}
	timeout := 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var ok, failed []string
	for res := range Gather[string](ctx, targets, "Status") {
		name := conns[res.Index].Peer().Name
		if res.Err != nil {
			assert.ErrorIs(t, res.Err, context.DeadlineExceeded, name)
			failed = append(failed, name)
			continue
		}
		assert.Equal(t, name+" ok", res.Value)
		assert.True(t, time.Now().Before(deadline), "%s answered before the timeout", name)
		ok = append(ok, name)
	}
	assert.Len(t, ok, 7)
	assert.ElementsMatch(t, []string{"agent-7", "agent-8", "agent-9"}, failed)

	// A peer can be found again by its id.
	c, found := srv.Conn(conns[0].Peer().ID)
	assert.True(t, found)
	assert.Same(t, conns[0], c)
	hole.Restore()
}
