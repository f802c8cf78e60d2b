package cache_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// mirrorHolder publishes a mirror its process already follows.
type mirrorHolder struct {
	remoteable.Referenceable
	mir *cache.Mirror[string, Item]
}

// Mirror returns the mirror: the caller gets a mirror of it.
func (h *mirrorHolder) Mirror(ctx context.Context) (*cache.Mirror[string, Item], error) {
	return h.mir, nil
}

// TestLeafMirrorPassedOnLater checks a mirror that nobody followed while
// it applied changes, deletions and a resync after an outage (its feed
// then keeps no state of its own): passed on afterwards, the mirror of it
// gets the model's exact state, and follows it from there.
func TestLeafMirrorPassedOnLater(t *testing.T) {
	leakcheck.Check(t)
	st := newStore(cache.WithLogSize(4))
	s := startServer(t, st)
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	for i := range 20 {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Name: "a", Count: i}))
	}
	mir := lookupMirror(t, cl)
	change := func(round int) {
		for i := range 20 {
			switch i % 3 {
			case 0:
				st.m.Delete(fmt.Sprint("k", i))
			default:
				require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Name: "b", Count: round*100 + i}))
			}
		}
		require.NoError(t, st.m.Set(fmt.Sprint("new", round), Item{Count: round}))
	}
	caughtUp := func(m *cache.Mirror[string, Item]) {
		testkit.Eventually(t, "the mirror catches up", func() bool { return m.Version() == st.m.Version() })
		requireEqualModel(t, st.m, m)
	}
	change(1)
	caughtUp(mir)

	// An outage longer than the log: the mirror resyncs from a snapshot.
	rec := watch(mir, &mir.StaleChanged)
	p.Reset()
	p.Refuse(true)
	rec.waitStale(t, true)
	change(2)
	change(3)
	p.Restore()
	rec.waitStale(t, false)
	caughtUp(mir)
	change(4)
	caughtUp(mir)

	// Passed on now: the mirror downstream gets the same state.
	reg := registry.New()
	require.NoError(t, reg.Register("holder", &mirrorHolder{mir: mir}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-errc })
	ctx := testkit.Ctx(t, 90*time.Second)
	conn, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var h *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &h, "holder"))
	var down *cache.Mirror[string, Item]
	require.NoError(t, h.Call(ctx, "Mirror", &down))
	t.Cleanup(func() { down.Close() })
	requireEqualModel(t, st.m, down)
	change(5)
	caughtUp(mir)
	caughtUp(down)

	// And the mirror in the middle, followed now, still resyncs.
	p.Reset()
	p.Refuse(true)
	rec.waitStale(t, true)
	change(6)
	change(7)
	p.Restore()
	rec.waitStale(t, false)
	caughtUp(mir)
	caughtUp(down)
}
