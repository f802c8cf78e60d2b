package cache_test

import (
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remote"
)

// chain is server → proxy up → relay → proxy down → clients.
type chain struct {
	st       *store
	srv      *server
	up, down *faultnet.Proxy
	relayCl  *remote.Client
	relay    *server
}

func startChain(t testing.TB, opts ...cache.Option) *chain {
	c := &chain{st: newStore(opts...)}
	c.srv = startServer(t, c.st)
	c.up = proxyTo(t, c.srv.addr)
	c.relayCl = connect(t, c.up.Addr())
	c.relay = startRelay(t, c.relayCl)
	c.down = proxyTo(t, c.relay.addr)
	return c
}

func TestRelayHoldsOneUpstreamSubscription(t *testing.T) {
	leakcheck.Check(t)
	c := startChain(t)
	for i := 0; i < 10; i++ {
		require.NoError(t, c.st.m.Set(fmt.Sprint("k", i), Item{Count: i}))
	}
	var mirrors []*cache.Mirror[string, Item]
	var clients []*remote.Client
	for i := 0; i < 5; i++ {
		cl := connect(t, c.down.Addr())
		clients = append(clients, cl)
		mirrors = append(mirrors, lookupMirror(t, cl))
	}
	require.Equal(t, 1, c.st.m.Subscribers(), "one subscription upstream for five mirrors downstream")
	for _, m := range mirrors {
		requireEqualModel(t, c.st.m, m)
	}

	// Read-your-writes through the relay: a call that changed the model
	// returns after every mirror on the caller's connection holds it.
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := clients[0].Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	require.NoError(t, ref.Call(ctx, "Put", nil, "ryw", 42))
	got, ok := mirrors[0].Get("ryw")
	require.True(t, ok, "the caller's mirror holds the change when the call returns")
	require.Equal(t, 42, got.Count)

	// An outage upstream of the relay: downstream mirrors go stale while
	// their own connections stay up, then catch up.
	var downDrops atomic.Int32
	for _, cl := range clients {
		cl.Disconnected.Connect(func(error) { downDrops.Add(1) })
	}
	recs := make([]*recorder, len(mirrors))
	for i, m := range mirrors {
		recs[i] = watch(m, &m.StaleChanged)
	}
	c.up.Reset()
	c.up.Refuse(true)
	for _, r := range recs {
		r.waitStale(t, true)
	}
	for i := 0; i < 30; i++ {
		require.NoError(t, c.st.m.Set(fmt.Sprint("out", i%4), Item{Count: i}))
	}
	c.up.Restore()
	for _, r := range recs {
		r.waitStale(t, false)
	}
	for _, m := range mirrors {
		testkit.Eventually(t, "downstream catches up", func() bool { return m.Version() == c.st.m.Version() })
		requireEqualModel(t, c.st.m, m)
	}
	require.Zero(t, downDrops.Load(), "downstream connections stayed up")
	require.Equal(t, 1, c.st.m.Subscribers())

	// Mirrors that go away are dropped: downstream, and then upstream once
	// the relay has nobody left to serve.
	for _, m := range mirrors {
		require.NoError(t, m.Close())
	}
	testkit.Eventually(t, "the upstream subscription is dropped", func() bool { return c.st.m.Subscribers() == 0 })
}

// TestChaosThreeHops cuts both links of a chain several times (reset and
// black hole) while a writer makes thousands of changes, and checks that
// every mirror ends equal to the source, that no mirror's watcher saw a
// version go back or a change twice, and that every outage showed as
// stale and then live.
func TestChaosThreeHops(t *testing.T) {
	leakcheck.Check(t)
	c := startChain(t, cache.WithLogSize(256))
	const clients = 3
	var mirrors []*cache.Mirror[string, Item]
	var recs []*recorder
	for i := 0; i < clients; i++ {
		cl := connect(t, c.down.Addr())
		m := lookupMirror(t, cl)
		mirrors = append(mirrors, m)
		recs = append(recs, watch(m, &m.StaleChanged))
	}

	stopWriter := startWriter(c.st.m, 1)

	cuts := []struct {
		name string
		p    *faultnet.Proxy
		cut  func(*faultnet.Proxy)
	}{
		{"upstream reset", c.up, func(p *faultnet.Proxy) { p.Reset() }},
		{"downstream reset", c.down, func(p *faultnet.Proxy) { p.Reset() }},
		{"upstream black hole", c.up, func(p *faultnet.Proxy) { p.Blackhole(true) }},
		{"downstream black hole", c.down, func(p *faultnet.Proxy) { p.Blackhole(true) }},
		{"upstream reset again", c.up, func(p *faultnet.Proxy) { p.Reset() }},
		{"downstream reset again", c.down, func(p *faultnet.Proxy) { p.Reset() }},
	}
	for _, cut := range cuts {
		time.Sleep(100 * time.Millisecond) // changes flow between outages
		began := time.Now()
		cut.cut(cut.p)
		for i, r := range recs {
			r.waitStale(t, true)
			t.Logf("%s: mirror %d stale after %v", cut.name, i, time.Since(began))
		}
		time.Sleep(50 * time.Millisecond) // changes pile up during the outage
		cut.p.Restore()
		for _, r := range recs {
			r.waitStale(t, false)
		}
		t.Logf("%s: live again after %v", cut.name, time.Since(began))
	}
	writes := stopWriter()
	t.Logf("%d writes, source at version %d", writes, c.st.m.Version())
	require.Greater(t, writes, int64(1000))

	for i, m := range mirrors {
		testkit.Eventually(t, "mirror catches up", func() bool { return m.Version() == c.st.m.Version() })
		requireEqualModel(t, c.st.m, m)
		require.False(t, m.Stale(), "mirror %d", i)
	}
	for i, r := range recs {
		testkit.Eventually(t, "watchers see the last version", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.last == c.st.m.Version()
		})
		r.mu.Lock()
		require.Empty(t, r.bad, "mirror %d", i)
		seen := map[string]bool{}
		for _, ev := range r.events {
			key := fmt.Sprint(ev.Key, "@", ev.Version)
			require.False(t, seen[key], "mirror %d saw %s twice", i, key)
			seen[key] = true
		}
		requireOutagesShown(t, r.stale, len(cuts), fmt.Sprint("mirror ", i))
		r.mu.Unlock()
	}
}

// startWriter sets and deletes entries over 50 keys of model, as fast as a
// writer pausing a millisecond every fourth change goes, until the function
// it returns is called; that function returns how many changes it made.
func startWriter(model *cache.Map[string, Item], seed int64) (stop func() int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewSource(seed))
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			k := fmt.Sprint("k", rng.Intn(50))
			if rng.Intn(5) == 0 {
				model.Delete(k)
			} else {
				_ = model.Set(k, Item{Name: k, Count: i})
			}
			writes.Add(1)
			if i%4 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return func() int64 {
		close(done)
		wg.Wait()
		return writes.Load()
	}
}
