package cache_test

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remote"
)

// recorder collects what a mirror's watchers see, checking on the fly that
// versions never go back (callers compare epochs where they change).
type recorder struct {
	mu      sync.Mutex
	events  []cache.Change[string, Item]
	stale   []bool
	last    uint64
	bad     []string
	staleCh chan bool
}

func watch(m cache.View[string, Item], stale interface {
	Connect(func(bool)) func()
}) *recorder {
	r := &recorder{staleCh: make(chan bool, 1024)}
	m.Changes().Connect(func(c cache.Change[string, Item]) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if c.Version < r.last {
			r.bad = append(r.bad, fmt.Sprintf("version went back from %d to %d", r.last, c.Version))
		}
		r.last = c.Version
		r.events = append(r.events, c)
	})
	if stale != nil {
		stale.Connect(func(s bool) {
			r.mu.Lock()
			r.stale = append(r.stale, s)
			r.mu.Unlock()
			r.staleCh <- s
		})
	}
	return r
}

func (r *recorder) waitStale(t testing.TB, want bool) {
	t.Helper()
	select {
	case s := <-r.staleCh:
		require.Equal(t, want, s)
	case <-time.After(30 * time.Second):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatalf("no stale=%v transition", want)
	}
}

// lookupMirror gets the store's model as a mirror through cl.
func lookupMirror(t testing.TB, cl *remote.Client) *cache.Mirror[string, Item] {
	t.Helper()
	ctx := testkit.Ctx(t, 90*time.Second)
	st, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, st.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	return mir
}

func requireEqualModel(t testing.TB, want *cache.Map[string, Item], got *cache.Mirror[string, Item]) {
	t.Helper()
	w, wv := want.Snapshot()
	g, gv := got.Snapshot()
	require.Equal(t, wv, gv, "versions")
	require.Equal(t, w, g, "entries")
}

func TestMirrorResumesWithTheChangesItMissed(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	s := startServer(t, st)
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	mir := lookupMirror(t, cl)
	rec := watch(mir, &mir.StaleChanged)

	for i := 0; i < 50; i++ {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i%7), Item{Count: i}))
	}
	testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == st.m.Version() })

	for round, cut := range []func(){p.Reset, func() { p.Blackhole(true) }} {
		cut()
		rec.waitStale(t, true)
		require.True(t, mir.Stale())
		// Changes made during the outage are replayed from the log.
		for i := 0; i < 20; i++ {
			require.NoError(t, st.m.Set(fmt.Sprint("gap", round, i%3), Item{Count: i}))
		}
		st.m.Delete("k1")
		p.Restore()
		rec.waitStale(t, false)
		testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == st.m.Version() })
		requireEqualModel(t, st.m, mir)
		require.False(t, mir.Stale())
	}

	// Every change was seen once, in order: the watcher saw versions 1..N
	// without a hole or a repeat (the log covered every outage).
	testkit.Eventually(t, "watchers see every change", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.events) > 0 && rec.events[len(rec.events)-1].Version == st.m.Version()
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Empty(t, rec.bad)
	for i, ev := range rec.events {
		require.Equal(t, uint64(i+1), ev.Version, "event %d", i)
	}
}

func TestMirrorTooFarBehindGetsSnapshotAndDifferences(t *testing.T) {
	leakcheck.Check(t)
	st := newStore(cache.WithLogSize(8))
	for i := 0; i < 5; i++ {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Count: i}))
	}
	s := startServer(t, st)
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	mir := lookupMirror(t, cl)
	rec := watch(mir, &mir.StaleChanged)

	p.Reset()
	p.Refuse(true) // no reconnection until the writer is done
	rec.waitStale(t, true)
	// Far more changes than the log keeps: k0 changes many times, k1 is
	// deleted, k9 is added, k2 is set to the value it already had.
	for i := 0; i < 100; i++ {
		require.NoError(t, st.m.Set("k0", Item{Count: 1000 + i}))
	}
	st.m.Delete("k1")
	require.NoError(t, st.m.Set("k9", Item{Count: 9}))
	require.NoError(t, st.m.Set("k2", Item{Count: 2}))
	p.Restore()
	rec.waitStale(t, false)
	testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == st.m.Version() })
	requireEqualModel(t, st.m, mir)

	// The watcher saw the differences only, all at the snapshot's version.
	testkit.Eventually(t, "three differences", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.events) >= 3
	})
	time.Sleep(50 * time.Millisecond) // nothing more may come
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.events, 3)
	byKey := map[string]cache.Change[string, Item]{}
	for _, ev := range rec.events {
		require.Equal(t, st.m.Version(), ev.Version)
		byKey[ev.Key] = ev
	}
	require.Equal(t, 1099, byKey["k0"].Value.Count)
	require.True(t, byKey["k1"].Deleted)
	require.Equal(t, 1, byKey["k1"].Value.Count, "a delete carries the value the watchers last saw")
	require.Equal(t, 9, byKey["k9"].Value.Count)
}

func TestServerRestartMeansNewEpochAndResync(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	for i := 0; i < 30; i++ {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i%10), Item{Count: i}))
	}
	s := startServer(t, st)
	addr := s.addr
	cl := connect(t, addr)
	mir := lookupMirror(t, cl)
	rec := watch(mir, &mir.StaleChanged)
	oldEpoch := mir.Epoch()

	s.stop()
	rec.waitStale(t, true)
	// The restarted server has a new model (new epoch) with other contents
	// and a lower version.
	st2 := newStore()
	require.NoError(t, st2.m.Set("k3", Item{Count: 3}))
	require.NoError(t, st2.m.Set("new", Item{Count: 1}))
	startServerAt(t, addr, st2)
	rec.waitStale(t, false)
	testkit.Eventually(t, "the mirror follows the new model", func() bool { return mir.Epoch() == st2.m.Epoch() })
	require.NotEqual(t, oldEpoch, mir.Epoch())
	requireEqualModel(t, st2.m, mir)
	testkit.Eventually(t, "differences delivered", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.events) >= 11
	})
	// The differences: k3 changed (23 → 3), "new" appeared, the nine other
	// keys went. All carry the new model's version.
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.events, 11)
	deleted := 0
	for _, ev := range rec.events {
		require.Equal(t, st2.m.Version(), ev.Version)
		if ev.Deleted {
			deleted++
		}
	}
	require.Equal(t, 9, deleted)
}
