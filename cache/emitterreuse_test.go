package cache_test

import (
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestWatchedMapHoldsNoDeliveredValues: a local model's emitter keeps the
// array of a queue it delivered for the next queue; the events in it, and
// the values and previous values they point to, are not kept. 199 Sets of
// 256 KiB values queue behind a watcher held on the first; while they are
// delivered (the watcher held again half way) a small Set takes the array
// kept so far, so the burst's array is the one kept next. Once the
// watchers saw everything, the model (a log of one change) holds about
// none of the 50 MiB.
func TestWatchedMapHoldsNoDeliveredValues(t *testing.T) {
	leakcheck.Check(t)
	m := cache.NewMap[int, []byte](cache.WithLogSize(1))
	gate1, gate2 := make(chan struct{}), make(chan struct{})
	var seen atomic.Int64
	stop := m.Changed.Connect(func(cache.Change[int, []byte]) {
		switch seen.Add(1) {
		case 1:
			<-gate1
		case 100:
			<-gate2
		}
	})
	defer stop()
	base := heapInUse()
	for range 200 {
		require.NoError(t, m.Set(0, make([]byte, 256<<10)))
	}
	close(gate1)
	testkit.Eventually(t, "the watcher half way through the burst", func() bool { return seen.Load() == 100 })
	require.NoError(t, m.Set(0, []byte("small")))
	close(gate2)
	testkit.Eventually(t, "the watcher saw every change", func() bool { return seen.Load() == 201 })
	held := heapInUse() - min(base, heapInUse())
	require.Less(t, held, uint64(8<<20), "the model holds %d MiB after its watchers saw every change", held>>20)
	require.Zero(t, m.MergedChanges(), "the burst fit in the queue: delivered, not merged")
	runtime.KeepAlive(m)
}
