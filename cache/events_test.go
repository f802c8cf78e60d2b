package cache_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// burstSize is the burst of issue 15: a watcher that keeps up sees all of
// it, one event per change.
const burstSize = 20000

// events records what a watcher saw, and can hold the watcher up (block)
// until released, as a slow watcher would be.
type events struct {
	mu      sync.Mutex
	got     []cache.Change[string, Item]
	state   map[string]Item // the model as the events tell it
	held    chan struct{}   // closed once the watcher is held up
	release chan struct{}   // nil: the watcher never waits
}

// record connects a watcher to sig; with block set, it waits at its first
// event until release is called.
func record(sig interface {
	Connect(func(cache.Change[string, Item])) func()
}, block bool) *events {
	e := &events{state: map[string]Item{}, held: make(chan struct{})}
	if block {
		e.release = make(chan struct{})
	}
	sig.Connect(func(c cache.Change[string, Item]) {
		e.mu.Lock()
		first := len(e.got) == 0
		e.got = append(e.got, c)
		if c.Deleted {
			delete(e.state, c.Key)
		} else {
			e.state[c.Key] = c.Value
		}
		e.mu.Unlock()
		if first && e.release != nil {
			close(e.held)
			<-e.release
		}
	})
	return e
}

// waitHeld waits until the watcher is held up at its first event.
func (e *events) waitHeld(t testing.TB) {
	t.Helper()
	select {
	case <-e.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher never saw its first event")
	}
}

// waitVersion waits until the watcher saw an event at version v.
func (e *events) waitVersion(t testing.TB, v uint64) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("the watcher sees version %d", v), func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.got) > 0 && e.got[len(e.got)-1].Version == v
	})
}

// requireEveryChange checks that the watcher saw versions from..to, one
// event each, none merged.
func (e *events) requireEveryChange(t testing.TB, from, to uint64) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	merged := 0
	for _, c := range e.got {
		if c.Merged {
			merged++
		}
	}
	require.Equal(t, int(to-from+1), len(e.got), "one event per change (%d merged)", merged)
	for i, c := range e.got {
		require.Equal(t, from+uint64(i), c.Version, "event %d", i)
		require.False(t, c.Merged, "event %d at version %d is merged", i, c.Version)
	}
}

// merged returns how many of the events seen were merged.
func (e *events) merged() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.got {
		if c.Merged {
			n++
		}
	}
	return n
}

// burst makes n changes to m as fast as Set and Delete go: sets over 64
// keys, every seventh change a delete of a key that is there.
func burst(t testing.TB, m *cache.Map[string, Item], n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		k := fmt.Sprint("k", i%64)
		if _, ok := m.Get(k); ok && i%7 == 0 {
			require.True(t, m.Delete(k))
			continue
		}
		require.NoError(t, m.Set(k, Item{Name: k, Count: i}))
	}
}

// tally is a watcher that does next to nothing: it counts the events and
// those that were not the one change after the previous event.
type tally struct {
	seen, last, breaks atomic.Uint64
}

// count connects a tally to sig, expecting the next event at version from.
func count(sig interface {
	Connect(func(cache.Change[string, Item])) func()
}, from uint64) *tally {
	n := &tally{}
	n.last.Store(from - 1)
	sig.Connect(func(c cache.Change[string, Item]) {
		n.seen.Add(1)
		if c.Merged || c.Version != n.last.Load()+1 {
			n.breaks.Add(1)
		}
		n.last.Store(c.Version)
	})
	return n
}

// requireEveryChange waits until the tally saw version to, and checks that
// it saw every change from its start to there, one event each, in order.
func (n *tally) requireEveryChange(t testing.TB, changes int, to uint64) {
	t.Helper()
	testkit.Eventually(t, fmt.Sprintf("the watcher sees version %d", to), func() bool { return n.last.Load() == to })
	require.Equal(t, uint64(changes), n.seen.Load(), "one event per change")
	require.Zero(t, n.breaks.Load(), "events merged or out of order")
}

// quietStore is a store whose model is made with the defaults: its log
// holds a whole burst (the old default, 4,096 changes, did not), so that
// its mirrors, left behind by the burst but applying it as fast as their
// link brings it, never fall behind the log (which would bring them a
// snapshot rather than the changes).
func quietStore() *store { return newStore() }

func TestWatcherThatKeepsUpSeesEveryChangeOfABurst(t *testing.T) {
	leakcheck.Check(t)
	st := quietStore()
	s := startServer(t, st)
	mir := lookupMirror(t, connect(t, s.addr))
	from := st.m.Version() + 1
	rec := count(&mir.Changed, from)
	local := count(&st.m.Changed, from)

	burst(t, st.m, burstSize)
	end := st.m.Version()
	rec.requireEveryChange(t, burstSize, end)
	require.Zero(t, mir.MergedChanges())

	// The model's own watchers see the same, unless the writer outran
	// the model's own event goroutine by more than the queue: possible on
	// a loaded machine (a local Set takes a microsecond), and then it
	// shows.
	if n := st.m.MergedChanges(); n > 0 {
		testkit.Eventually(t, "the local watcher catches up", func() bool { return local.last.Load() == end })
		t.Logf("the local watcher fell behind: %d changes merged", n)
		require.Positive(t, local.breaks.Load())
		return
	}
	local.requireEveryChange(t, burstSize, end)
}

func TestWatcherThatKeepsUpSeesEveryChangeThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	st := quietStore()
	s := startServer(t, st)
	// The relay's mirror logs the whole burst too, by default, so that
	// the client's mirror never falls behind it.
	relay := startRelay(t, connect(t, s.addr))
	mir := lookupMirror(t, connect(t, relay.addr))
	rec := count(&mir.Changed, st.m.Version()+1)

	burst(t, st.m, burstSize)
	end := st.m.Version()
	rec.requireEveryChange(t, burstSize, end)
	require.Zero(t, mir.MergedChanges())
	requireEqualModel(t, st.m, mir)
}

func TestRelayLogSizeMustNotBeNegative(t *testing.T) {
	_, err := remote.Connect(testkit.Ctx(t, 10*time.Second), "tcp", "127.0.0.1:1", remote.WithRelayLogSize(-1))
	require.ErrorIs(t, err, broker.ErrInvalidOption)
}

// requireMergedThenExact checks what a watcher held up through a burst saw:
// merged events, counted by merged (the model's or mirror's
// MergedChanges), and in the end exactly the model's state.
func requireMergedThenExact(t *testing.T, rec *events, m *cache.Map[string, Item], merged uint64) {
	t.Helper()
	require.Positive(t, rec.merged(), "a watcher that fell behind sees merged events")
	require.Positive(t, merged, "and the changes merged are counted")
	want, _ := m.Snapshot()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, want, rec.state, "the events tell the exact final state")
	var last uint64
	for i, c := range rec.got {
		require.GreaterOrEqual(t, c.Version, last, "event %d goes back", i)
		if !c.Merged && i > 0 && !rec.got[i-1].Merged {
			require.Equal(t, last+1, c.Version, "unmerged event %d", i)
		}
		last = c.Version
	}
}

func TestSlowWatcherSeesMergedEventsThenTheFinalState(t *testing.T) {
	leakcheck.Check(t)
	st := quietStore()
	s := startServer(t, st)
	mir := lookupMirror(t, connect(t, s.addr))
	rec := record(&mir.Changed, true)
	local := record(&st.m.Changed, true)

	require.NoError(t, st.m.Set("first", Item{Count: -1}))
	rec.waitHeld(t)
	local.waitHeld(t)
	// Both watchers are held up at their first event: the burst is more
	// than their queue (4096 by default), a batch (at most 2048) and what
	// their goroutine took before it was held up (at most a batch) can
	// hold.
	burst(t, st.m, 10000)
	end := st.m.Version()
	testkit.Eventually(t, "the mirror applies the burst", func() bool { return mir.Version() == end })
	close(rec.release)
	close(local.release)
	rec.waitVersion(t, end)
	local.waitVersion(t, end)
	requireMergedThenExact(t, rec, st.m, mir.MergedChanges())
	requireMergedThenExact(t, local, st.m, st.m.MergedChanges())
}

func TestMirrorQueueSizeFromOptions(t *testing.T) {
	leakcheck.Check(t)
	st := quietStore()
	s := startServer(t, st)
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := connect(t, s.addr).Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	// A queue longer than the burst: a watcher held up through all of it
	// still sees every change, where one with the default queue (the test
	// above) sees merged events.
	mir := cache.NewMirror[string, Item](cache.WithQueueSize(4 * burstSize))
	rec := record(&mir.Changed, true)
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	defer mir.Close()

	from := st.m.Version() + 1
	require.NoError(t, st.m.Set("first", Item{Count: -1}))
	rec.waitHeld(t)
	burst(t, st.m, burstSize)
	end := st.m.Version()
	testkit.Eventually(t, "the mirror applies the burst", func() bool { return mir.Version() == end })
	close(rec.release)
	rec.waitVersion(t, end)
	rec.requireEveryChange(t, from, end)
	require.Zero(t, mir.MergedChanges())
}

func TestMirrorWatchedBeforeTheCallSeesTheInitialEntries(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	for i := 0; i < 3; i++ {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Count: i}))
	}
	s := startServer(t, st)
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := connect(t, s.addr).Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	mir := cache.NewMirror[string, Item]()
	rec := record(&mir.Changed, false)
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	defer mir.Close()
	rec.waitVersion(t, 3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.got, 3)
	for _, c := range rec.got {
		require.True(t, c.Merged, "an entry of the first snapshot stands for the changes that made it")
		require.Equal(t, uint64(3), c.Version)
	}
}

// hub republishes one mirror of the store's model: a process in the
// middle whose mirror serves mirrors downstream.
type hub struct {
	remoteable.Referenceable
	mir *cache.Mirror[string, Item]
}

// Model returns the hub's mirror: the caller gets a mirror of it.
func (h *hub) Model(ctx context.Context) (*cache.Mirror[string, Item], error) { return h.mir, nil }

// startHub mirrors the store at addr into a mirror made with opts and
// serves it, returning the mirror and the hub's address.
func startHub(t *testing.T, addr string, opts ...cache.Option) (*cache.Mirror[string, Item], string) {
	t.Helper()
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := connect(t, addr).Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	h := &hub{mir: cache.NewMirror[string, Item](opts...)}
	require.NoError(t, ref.Call(ctx, "Model", &h.mir))
	t.Cleanup(func() { h.mir.Close() })
	reg := registry.New()
	require.NoError(t, reg.Register("store", h))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-errc })
	return h.mir, ln.Addr().String()
}

// missWhileCut cuts the link between a mirror of the hub's mirror and the
// hub, makes changes changes meanwhile, and returns what the downstream
// mirror's watcher saw of them once it resumed.
func missWhileCut(t *testing.T, logSize, changes int) *events {
	st := newStore()
	s := startServer(t, st)
	mid, hubAddr := startHub(t, s.addr, cache.WithLogSize(logSize))
	p := proxyTo(t, hubAddr)
	down := lookupMirror(t, connect(t, p.Addr()))
	rec := record(&down.Changed, false)
	stale := watch(down, &down.StaleChanged)

	p.Blackhole(true)
	stale.waitStale(t, true)
	burst(t, st.m, changes)
	end := st.m.Version()
	testkit.Eventually(t, "the hub's mirror applies the changes", func() bool { return mid.Version() == end })
	p.Restore()
	stale.waitStale(t, false)
	rec.waitVersion(t, end)
	requireEqualModel(t, st.m, down)
	return rec
}

func TestMirrorLogSizeFromOptions(t *testing.T) {
	leakcheck.Check(t)
	// The hub's mirror keeps the last 300 changes: a mirror downstream
	// that missed 200 gets them one by one.
	rec := missWhileCut(t, 300, 200)
	rec.requireEveryChange(t, 1, 200)

	// It keeps the last 8: one that missed 200 gets a snapshot, whose
	// differences (one per key, at most 64) come merged.
	rec = missWhileCut(t, 8, 200)
	require.Equal(t, rec.merged(), len(rec.got), "every event of a snapshot's differences is merged")
	require.LessOrEqual(t, len(rec.got), 64)
}

func TestMirrorReceivesOneModelOnly(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	s := startServer(t, st)
	ctx := testkit.Ctx(t, 90*time.Second)

	// Through a *remote.Ref, and through a bare *broker.Ref.
	ref, err := connect(t, s.addr).Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	_, bare := dialStore(t, s)
	for name, caller := range map[string]remoteable.Caller{"remote": ref, "broker": bare} {
		mir := cache.NewMirror[string, Item](cache.WithQueueSize(8))
		require.NoError(t, caller.Call(ctx, "Model", &mir), name)
		first := mir
		err := caller.Call(ctx, "Model", &mir)
		require.True(t, errors.Is(err, cache.ErrAttached), "%s: %v", name, err)
		require.True(t, errors.Is(err, broker.ErrBadReply), "%s: %v", name, err)
		require.Same(t, first, mir, name)
		// The mirror still follows the model it received first.
		require.NoError(t, st.m.Set("b", Item{Count: 2}))
		testkit.Eventually(t, name+": the mirror follows", func() bool { return mir.Version() == st.m.Version() })
		require.NoError(t, mir.Close())
		require.NoError(t, st.m.Set("c", Item{Count: 3}))
	}

	vm := cache.NewValueMirror[int](cache.WithQueueSize(8))
	require.NoError(t, ref.Call(ctx, "Counter", &vm))
	err = ref.Call(ctx, "Counter", &vm)
	require.True(t, errors.Is(err, cache.ErrAttached), "%v", err)
	require.NoError(t, vm.Close())
}

// ints publishes a model of other types than the store's.
type ints struct {
	remoteable.Referenceable
	m *cache.Map[string, int]
}

// Model returns the model.
func (i *ints) Model(ctx context.Context) (*cache.Map[string, int], error) { return i.m, nil }

func TestMirrorThatFailedToAttachCanReceiveAgain(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	s := startServer(t, st)
	other := &ints{m: cache.NewMap[string, int]()}
	require.NoError(t, other.m.Set("x", 7))
	require.NoError(t, s.reg.Register("ints", other))
	cl := connect(t, s.addr)
	storeRef, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	intsRef, err := cl.Registry().Lookup(ctx, "ints")
	require.NoError(t, err)

	mir := cache.NewMirror[string, int](cache.WithQueueSize(8))
	err = storeRef.Call(ctx, "Model", &mir)
	require.ErrorContains(t, err, "cannot decode", "the store's entries are not ints")
	require.False(t, errors.Is(err, cache.ErrAttached), "%v", err)
	testkit.Eventually(t, "nothing is left subscribed", func() bool { return st.m.Subscribers() == 0 })

	// The failed attachment left the mirror as it was made.
	require.NoError(t, intsRef.Call(ctx, "Model", &mir))
	defer mir.Close()
	snap, v := mir.Snapshot()
	require.Equal(t, map[string]int{"x": 7}, snap)
	require.Equal(t, other.m.Version(), v)
}
