package feed

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// bytesSink is a typed layer that keeps every entry's bytes, as a cache
// mirror does: a StateSource. gone makes it say its mirror was collected.
type bytesSink struct {
	mu      sync.Mutex
	entries map[string][2][]byte
	gone    atomic.Bool
}

func (s *bytesSink) Decode(c Change) (any, error) { return nil, nil }

func (s *bytesSink) Commit(events []Event, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		if ev.Deleted {
			delete(s.entries, string(ev.Key))
		} else {
			s.entries[string(ev.Key)] = [2][]byte{ev.Key, ev.Value}
		}
	}
}

func (s *bytesSink) Stale(bool) {}

func (s *bytesSink) Entries(yield func(key, value []byte)) bool {
	if s.gone.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.entries {
		yield(e[0], e[1])
	}
	return true
}

// stateOf returns a feed's entries and version, as Read shows them.
func stateOf(f *Feed) (map[string]string, uint64) {
	out := map[string]string{}
	var v uint64
	f.Read(func(_ string, version uint64, st State) {
		v = version
		for k, val := range st.All() {
			out[string(k)] = string(val)
		}
	})
	return out, v
}

// TestLeafFeedServedWhileALargeModelChanges: a mirror's feed whose typed
// layer holds the bytes keeps no slots while nobody follows it, through
// thousands of changes and deletions (compacting the source's slots); it
// is then served to mirrors downstream, one after another, while a writer
// keeps changing the model, and each ends with the source's exact bytes
// and version, as does the feed in the middle.
func TestLeafFeedServedWhileALargeModelChanges(t *testing.T) {
	leakcheck.Check(t)
	const keys = 3000
	src := New(16, nil)
	for i := range keys {
		src.Set(enc(fmt.Sprint("k", i)), enc(i))
	}
	ctx := testkit.Ctx(t, 60*time.Second)
	sink := &bytesSink{entries: map[string][2][]byte{}}
	fl := NewFollower(serveFeed(t, src)(), sink, Options{LogSize: 16})
	require.NoError(t, fl.Attach(ctx))
	t.Cleanup(fl.Close)
	mid := fl.Feed()
	for i := range keys {
		if i%3 != 0 {
			src.Delete(enc(fmt.Sprint("k", i)))
		} else {
			src.Set(enc(fmt.Sprint("k", i)), enc(-i))
		}
	}
	testkit.Eventually(t, "the mirror follows", func() bool { return mid.Version() == src.Version() })
	mid.mu.Lock()
	require.True(t, mid.lazy, "nobody follows the mirror: its feed keeps no state")
	require.Empty(t, mid.slots)
	mid.mu.Unlock()

	stopWriter := testkit.Writer(t, func(i int) {
		k := enc(fmt.Sprint("k", i%keys))
		if i%4 == 0 {
			src.Delete(k)
		} else {
			src.Set(k, enc(i))
		}
		if i%8 == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	})
	dial := serveFeed(t, mid)
	var downs []*Follower
	for range 3 {
		d := NewFollower(dial(), &intSink{state: map[string]int{}}, Options{})
		require.NoError(t, d.Attach(ctx))
		t.Cleanup(d.Close)
		downs = append(downs, d)
		time.Sleep(10 * time.Millisecond)
	}
	stopWriter()
	want, wv := stateOf(src)
	testkit.Eventually(t, "the mirror follows", func() bool { return mid.Version() == wv })
	got, gv := stateOf(mid)
	require.Equal(t, wv, gv)
	require.Equal(t, want, got, "the feed in the middle holds the source's bytes")
	for i, d := range downs {
		testkit.Eventually(t, fmt.Sprint("mirror downstream ", i, " follows"), func() bool { return d.Feed().Version() == wv })
		got, _ := stateOf(d.Feed())
		require.Equal(t, want, got, "mirror downstream %d", i)
		require.NoError(t, d.Err())
	}
}

// TestLeafFeedWhoseTypedLayerIsGoneRefusesSubscribers: a mirror's feed
// that keeps no state of its own, whose typed layer can no longer give it
// (the mirror was collected), refuses a subscriber with ErrSourceLost
// rather than serve it an empty state.
func TestLeafFeedWhoseTypedLayerIsGoneRefusesSubscribers(t *testing.T) {
	leakcheck.Check(t)
	src := New(16, nil)
	for i := range 10 {
		src.Set(enc(fmt.Sprint("k", i)), enc(i))
	}
	ctx := testkit.Ctx(t, 60*time.Second)
	sink := &bytesSink{entries: map[string][2][]byte{}}
	fl := NewFollower(serveFeed(t, src)(), sink, Options{})
	require.NoError(t, fl.Attach(ctx))
	t.Cleanup(fl.Close)
	sink.gone.Store(true)
	d := NewFollower(serveFeed(t, fl.Feed())(), &intSink{state: map[string]int{}}, Options{})
	err := d.Attach(ctx)
	if err == nil {
		d.Close()
	}
	require.ErrorIs(t, err, ErrSourceLost)
}
