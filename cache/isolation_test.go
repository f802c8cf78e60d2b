package cache_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// stuckObserver speaks the cache protocol directly and does not acknowledge
// its second batch until gate closes: a subscriber that has stalled.
type stuckObserver struct {
	remoteable.Referenceable
	mu      sync.Mutex
	batches [][]any
	gate    chan struct{}
	got     chan struct{}
}

func (o *stuckObserver) Apply(ctx context.Context, b []any) error {
	o.mu.Lock()
	o.batches = append(o.batches, b)
	n := len(o.batches)
	o.mu.Unlock()
	o.got <- struct{}{}
	if n == 2 {
		select { // the second batch is where it stalls
		case <-o.gate:
		case <-ctx.Done():
		}
	}
	return nil
}

// awaitBatch waits until the observer has received one more batch.
func awaitBatch(ctx context.Context, t *testing.T, o *stuckObserver) {
	t.Helper()
	select {
	case <-o.got:
	case <-ctx.Done():
		t.Fatalf("no batch came: %v", ctx.Err())
	}
}

// fanOut is one measured run: a writer making n changes to a model watched
// by mirrors (and maybe a stalled subscriber), timing the writer and the
// delay until each mirror applies sampled versions.
type fanOut struct {
	writes    time.Duration
	latencies []time.Duration
	heap      uint64
}

func runFanOut(t *testing.T, mirrors int, stalled bool, n int) fanOut {
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore(cache.WithLogSize(1024))
	s := startServer(t, st)
	var stores []*broker.Ref
	for i := 0; i < 10; i++ {
		c, err := broker.Dial(ctx, "tcp", s.addr)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		r, err := broker.Call[*broker.Ref](ctx, c.Root(), "Lookup", "store")
		require.NoError(t, err)
		stores = append(stores, r)
	}
	var stuck *stuckObserver
	if stalled {
		stuck = &stuckObserver{gate: make(chan struct{}), got: make(chan struct{}, 16)}
		var feedRef *broker.Ref
		require.NoError(t, stores[0].Call(ctx, "Model", &feedRef))
		require.True(t, feedRef.Cacheable())
		var sub *broker.Ref
		require.NoError(t, feedRef.Call(ctx, "Subscribe", &sub, stuck, "", uint64(0)))
		t.Cleanup(func() { sub.Release(); feedRef.Release() })
		// The stall starts before the writer does, at a known version: the
		// first batch is the empty model's snapshot, the second the one
		// change made here, which the subscriber then sits on. (Stalling
		// on whatever batch the writer's run happened to produce let a
		// pusher scheduled late take a snapshot near the run's end as its
		// second batch, and legitimately replay the few steps after it as
		// its third.)
		awaitBatch(ctx, t, stuck)
		require.NoError(t, st.m.Set("k0", Item{Name: "k0"}))
		awaitBatch(ctx, t, stuck)
		stuck.mu.Lock()
		second := stuck.batches[1]
		stuck.mu.Unlock()
		require.Equal(t, []any{false, int64(1)}, []any{second[3], second[1]}, "the subscriber stalls on the step to version 1")
	}
	type sample struct {
		mu   sync.Mutex
		sent map[uint64]time.Time
		lat  []time.Duration
	}
	smp := &sample{sent: map[uint64]time.Time{}}
	var all []*cache.Mirror[string, Item]
	for i := 0; i < mirrors; i++ {
		var mir *cache.Mirror[string, Item]
		require.NoError(t, stores[i%len(stores)].Call(ctx, "Model", &mir))
		t.Cleanup(func() { mir.Close() })
		mir.Changed.Connect(func(c cache.Change[string, Item]) {
			smp.mu.Lock()
			if at, ok := smp.sent[c.Version]; ok {
				smp.lat = append(smp.lat, time.Since(at))
			}
			smp.mu.Unlock()
		})
		all = append(all, mir)
	}
	// Throughput: the writer as fast as it goes.
	start := time.Now()
	for i := 0; i < n; i++ {
		k := fmt.Sprint("k", i%100)
		require.NoError(t, st.m.Set(k, Item{Name: k, Count: i}))
	}
	writes := time.Since(start)
	for _, m := range all {
		testkit.Eventually(t, "mirrors catch up", func() bool { return m.Version() == st.m.Version() })
	}
	// Latency: a paced writer (about 500 changes/s), every 10th change
	// timed until each mirror's watcher sees it.
	for i := 0; i < 500; i++ {
		k := fmt.Sprint("k", i%100)
		require.NoError(t, st.m.Set(k, Item{Name: k, Count: i}))
		if i%10 == 0 {
			smp.mu.Lock()
			smp.sent[st.m.Version()] = time.Now()
			smp.mu.Unlock()
		}
		time.Sleep(2 * time.Millisecond)
	}
	for _, m := range all {
		testkit.Eventually(t, "mirrors catch up", func() bool { return m.Version() == st.m.Version() })
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if stalled {
		// The stalled subscriber kept only a cursor, at version 1: when it
		// moves again it is n+500 changes behind a log of 1024 and gets a
		// snapshot, not the backlog. The snapshot may be one the feed took
		// a little earlier and still shares with other subscriptions
		// (internal/feed/snapshare.go), followed by the steps made since
		// as the snapshot's own batches: it ends (More unset) at the
		// model's current version.
		close(stuck.gate)
		var snap [][]any
		testkit.Eventually(t, "the stalled subscriber's snapshot", func() bool {
			stuck.mu.Lock()
			defer stuck.mu.Unlock()
			snap = append([][]any(nil), stuck.batches[2:]...)
			return len(snap) > 0 && snap[len(snap)-1][4] == false
		})
		require.Equal(t, true, snap[0][3], "the stalled subscriber is resynchronised with a snapshot")
		require.Equal(t, true, snap[0][7], "the snapshot starts afresh (First)")
		require.Equal(t, int64(100), int64(len(snap[0][6].([]any))), "the snapshot holds the 100 keys")
		for i, b := range snap {
			require.Equal(t, true, b[3], "batch %d after the stall is part of the snapshot", i+3)
		}
		require.Equal(t, int64(st.m.Version()), snap[len(snap)-1][1], "the snapshot reaches the model's current version")
	}
	smp.mu.Lock()
	defer smp.mu.Unlock()
	return fanOut{writes: writes, latencies: append([]time.Duration(nil), smp.lat...), heap: ms.HeapInuse}
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

// TestStalledObserverIsIsolated runs 100 observers of a model with and
// without a stalled one among them. It asserts behaviour (everyone
// converges, the stalled one is resynchronised with a snapshot, not sent
// a backlog) and reports the writer's throughput and the others' latency
// for both runs; it asserts nothing about times.
func TestStalledObserverIsIsolated(t *testing.T) {
	leakcheck.Check(t)
	n := 50000 // long enough for the writer's time to mean something
	if raceEnabled {
		n = 5000
	}
	var base, stalled fanOut
	t.Run("all-live", func(t *testing.T) { base = runFanOut(t, 100, false, n) })
	t.Run("one-stalled", func(t *testing.T) { stalled = runFanOut(t, 99, true, n) })
	if t.Failed() {
		return
	}
	t.Logf("without a stalled observer: writer %.0f changes/s, median latency %v (%d samples), heap in use %d KiB",
		float64(n)/base.writes.Seconds(), median(base.latencies), len(base.latencies), base.heap>>10)
	t.Logf("with one stalled among 100: writer %.0f changes/s, median latency %v (%d samples), heap in use %d KiB",
		float64(n)/stalled.writes.Seconds(), median(stalled.latencies), len(stalled.latencies), stalled.heap>>10)
	t.Logf("ratios (stalled / not): writer time %.2f, median latency %.2f",
		stalled.writes.Seconds()/base.writes.Seconds(), float64(median(stalled.latencies))/float64(median(base.latencies)))
}

// TestSlowWatcherIsCoalesced blocks a watcher of a local map while the
// writer goes on: the writer is never held up, and once the watcher moves
// again it sees the differences rather than every step.
func TestSlowWatcherIsCoalesced(t *testing.T) {
	leakcheck.Check(t)
	m := cache.NewMap[string, int](cache.WithQueueSize(16))
	gate := make(chan struct{})
	var mu sync.Mutex
	var seen []cache.Change[string, int]
	first := true
	m.Changed.Connect(func(c cache.Change[string, int]) {
		if first {
			first = false
			<-gate
		}
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
	})
	require.NoError(t, m.Set("a", 1))
	for i := 0; i < 10000; i++ {
		require.NoError(t, m.Set(fmt.Sprint("k", i%10), i)) // never blocks on the watcher
	}
	m.Delete("k3")
	close(gate)
	testkit.Eventually(t, "the watcher catches up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].Version == m.Version()
	})
	mu.Lock()
	defer mu.Unlock()
	// What the emitter had already taken when the watcher blocked (at most
	// the queue, 16), then at most one event per key (11 keys).
	require.LessOrEqual(t, len(seen), 16+11)
	final := map[string]int{"a": 1}
	for _, c := range seen {
		if c.Deleted {
			delete(final, c.Key)
		} else {
			final[c.Key] = c.Value
		}
	}
	want, _ := m.Snapshot()
	require.Equal(t, want, final, "the events leave a watcher with the model's state")
}

// TestSameWatcherLocalAndRemote runs one watcher function against a local
// map and against a mirror of it; both print the same events.
func TestSameWatcherLocalAndRemote(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	s := startServer(t, st)
	cl := connect(t, s.addr)
	mir := lookupMirror(t, cl)

	printer := func(v cache.View[string, Item], out chan<- string) func() {
		return v.Changes().Connect(func(c cache.Change[string, Item]) {
			if c.Deleted {
				out <- fmt.Sprintf("v%d delete %s", c.Version, c.Key)
			} else {
				out <- fmt.Sprintf("v%d set %s=%d (len %d)", c.Version, c.Key, c.Value.Count, -1)
			}
		})
	}
	local, remote := make(chan string, 100), make(chan string, 100)
	defer printer(st.m, local)()
	defer printer(mir, remote)()
	ref, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	require.NoError(t, ref.Call(ctx, "Put", nil, "alice", 1))
	require.NoError(t, st.m.Set("bob", Item{Count: 2}))
	require.NoError(t, ref.Call(ctx, "Put", nil, "alice", 3))
	var ok bool
	require.NoError(t, ref.Call(ctx, "Remove", &ok, "bob"))
	var a, b []string
	for i := 0; i < 4; i++ {
		a = append(a, <-local)
		b = append(b, <-remote)
	}
	require.Equal(t, []string{"v1 set alice=1 (len -1)", "v2 set bob=2 (len -1)", "v3 set alice=3 (len -1)", "v4 delete bob"}, a)
	require.Equal(t, a, b)
}
