package feed

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestDroppedLargeValuesAreCollected: the log of a feed made with no size
// holds at most DefaultLogBytes of keys and values, and the values of the
// steps it dropped do not stay reachable beyond about as much again (the
// log's backing array keeps some dropped steps until it is reallocated).
// Steps taken from a slab of 128 kept every dropped value of a slab whose
// last steps were still logged: 1 MiB values held ~128 MiB.
func TestDroppedLargeValuesAreCollected(t *testing.T) {
	const valueSize = 1 << 20
	f := New(0, nil)
	key := enc("k")
	base := heapInUse()
	for i := range 260 {
		v := make([]byte, valueSize)
		v[0], v[1] = 0x5a, byte(i) // any bytes: the feed does not decode them
		f.Set(key, v)
	}
	held := heapInUse() - min(base, heapInUse())
	n, size, _ := logState(f)
	require.LessOrEqual(t, size, DefaultLogBytes)
	t.Logf("log %d steps, %d bytes; heap held %d MiB", n, size, held>>20)
	require.Less(t, held, uint64(3*DefaultLogBytes),
		"the feed holds %d MiB for a log of %d steps of 1 MiB", held>>20, n)
	runtime.KeepAlive(f)
}
