package feed

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// logState returns the feed's log: its changes, its bytes as counted
// against the byte bound, and the version its first step starts at.
func logState(f *Feed) (changes, size int, from uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.log) > 0 {
		from = f.log[0].From
	}
	return f.logLen, f.logBytes, from
}

// TestDefaultLogHoldsABurst: a feed made with no size keeps a burst of
// 20,000 small changes whole (the old default, 4,096, did not), so that a
// subscription left behind by the burst is served every change; it keeps
// no more than DefaultLogSize.
func TestDefaultLogHoldsABurst(t *testing.T) {
	f := New(0, nil)
	for i := range 20000 {
		f.Set(enc(fmt.Sprint("k", i%1000)), enc(i))
	}
	n, _, from := logState(f)
	require.Equal(t, 20000, n)
	require.Zero(t, from, "the log reaches back to the burst's start")
	require.True(t, f.covered(0))

	for i := range DefaultLogSize {
		f.Set(enc(fmt.Sprint("k", i%1000)), enc(i))
	}
	n, _, _ = logState(f)
	require.Equal(t, DefaultLogSize, n)
}

// TestDefaultLogBoundsBytes: with large values the default log keeps what
// fits in DefaultLogBytes, not DefaultLogSize of them; a subscription
// further behind gets a snapshot. A size given keeps that many changes
// whatever their size.
func TestDefaultLogBoundsBytes(t *testing.T) {
	big := enc(bytes.Repeat([]byte{'x'}, 64<<10))
	f := New(0, nil)
	for i := range 1000 {
		f.Set(enc(fmt.Sprint("k", i%10)), big)
	}
	n, size, from := logState(f)
	require.LessOrEqual(t, size, DefaultLogBytes)
	require.Greater(t, size, DefaultLogBytes-len(big)-2*logEntryCost, "it keeps as much as fits")
	require.Less(t, n, 1000)
	require.Equal(t, uint64(1000-n), from)
	require.False(t, f.covered(0), "a subscription at the start needs a snapshot")

	g := New(300, nil)
	for i := range 1000 {
		g.Set(enc(fmt.Sprint("k", i%10)), big)
	}
	n, _, _ = logState(g)
	require.Equal(t, 300, n, "a size given is kept whatever the changes' size")

	// A step larger than the byte bound empties the log.
	h := New(0, nil)
	h.Set(enc("small"), enc(1))
	h.Set(enc("huge"), enc(bytes.Repeat([]byte{'y'}, DefaultLogBytes)))
	n, size, _ = logState(h)
	require.Zero(t, n)
	require.Zero(t, size)
}
