package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/remoteable"
)

// guardedWatcher mirrors the models callers pass it, for "agent" only.
type guardedWatcher struct {
	remoteable.Referenceable
	ran int
}

func (*guardedWatcher) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("agent") }

func (g *guardedWatcher) Follow(ctx context.Context, m *cache.Mirror[string, int]) error {
	g.ran++
	return nil
}

// TestRefusedCallsMirrorNothing: the policy is asked before the arguments
// are decoded, so a refused caller cannot make the server subscribe to its
// models. Before the fix each refused call left a server-side mirror of
// the caller's model alive.
func TestRefusedCallsMirrorNothing(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	g := &guardedWatcher{}
	srv, addr := brokertest.Serve(t, g)
	c := brokertest.Dial(t, addr, broker.WithName("agent")) // announced, not verified

	model := cache.NewMap[string, int]()
	require.NoError(t, model.Set("admin", 1))
	for i := 0; i < 100; i++ {
		err := c.Root().Call(ctx, "Follow", nil, model)
		require.ErrorIs(t, err, remoteable.ErrUnverified)
	}
	assert.Equal(t, 0, g.ran)
	assert.Equal(t, 0, srv.Stats().Mirrors, "the server mirrors nothing of the refused caller's")
	testkit.Eventually(t, "the model's feed is released", func() bool { return c.Stats().Exports == 0 })
	assert.Equal(t, 0, model.Subscribers())
}
