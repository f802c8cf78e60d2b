package feed

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSetDoesNotKeepTheCallersKey: Feed.Set and Feed.Delete copy a new
// key and otherwise use the feed's own copy, so a writer may encode its
// keys into a buffer it reuses (cache.Map encodes them on its stack). A
// buffer changed after each call leaves the feed's state, the changes it
// logged and the events it returned as they were.
func TestSetDoesNotKeepTheCallersKey(t *testing.T) {
	f := New(0, nil)
	buf := enc("alpha")
	scribble := func() { copy(buf, enc("omega")) } // the same length: same place in memory
	ev := f.Set(buf, enc(1))
	scribble()
	require.Equal(t, string(enc("alpha")), string(ev.Key))

	buf = enc("alpha")
	ev = f.Set(buf, enc(2)) // a key the feed holds
	scribble()
	require.Equal(t, string(enc("alpha")), string(ev.Key))
	require.Equal(t, map[string]string{string(enc("alpha")): string(enc(2))}, entriesOf(f))

	buf = enc("alpha")
	ev, ok := f.Delete(buf)
	scribble()
	require.True(t, ok)
	require.Equal(t, string(enc("alpha")), string(ev.Key))
	_, ok = f.Delete(enc("alpha"))
	require.False(t, ok, "a Delete of an absent key is not a change")
	require.Equal(t, uint64(3), f.Version())

	f.mu.Lock()
	defer f.mu.Unlock()
	require.Len(t, f.log, 3)
	for _, ls := range f.log {
		require.Equal(t, string(enc("alpha")), string(ls.Changes[0].Key), "step to %d", ls.Version)
	}
	require.Empty(t, f.index)
}
