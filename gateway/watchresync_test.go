package gateway_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
)

// TestWatchStreamShowsEveryChangeAtItsVersionWhileChangesStream: a watcher
// that starts reading only after a burst of megabytes of changes, more than
// the model's log, reads while the writer goes on. The gateway's mirror, a
// leaf nobody follows, falls behind the log and resyncs from a snapshot
// under the writes (one resync of 34 keys each run on a 2-core machine);
// its queue for the watcher could overflow into a fresh snapshot (Feed.Read)
// but did not in those runs. Every value the writer sets is the version
// its Set makes: a snapshot holds no
// value from after its version; a set at the version after the previous
// event's is that one change, with its value; versions never go back (the
// events of a resync of the gateway's own mirror, which may fall behind
// the model's log, share one version and hold no later value); and the
// watcher's state ends as the model's.
func TestWatchStreamShowsEveryChangeAtItsVersionWhileChangesStream(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	m := cache.NewMap[string, int](cache.WithLogSize(10000))
	e.shop.model = m
	s := e.watch(t, "shop.Model", "")
	first := s.next(t)
	require.Equal(t, "snapshot", first.Kind)

	// A burst of long keys, many megabytes of events, more than the
	// model's log holds.
	const burst = 16000
	key := func(i int) string { return strings.Repeat("k", 1000) + strconv.Itoa(i%40) }
	keyJSON := func(i int) string { return strconv.Quote(key(i)) }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	written := make(chan struct{}) // closed once the reader is far behind
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			if i == burst {
				close(written)
			}
			select {
			case <-stop:
				return
			default:
			}
			if i%7 == 3 {
				m.Delete(key(i))
			} else if err := m.Set(key(i), int(m.Version()+1)); err != nil {
				panic(err)
			}
			if i > burst && i%16 == 0 {
				time.Sleep(100 * time.Microsecond) // the writer goes on while the reader resyncs
			}
		}
	}()
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriter)
	select {
	case <-written:
	case <-time.After(60 * time.Second):
		t.Fatal("the writer did not make its burst in a minute")
	}

	state := map[string]int{}
	version, snapshots, received, diffs, outages := first.Version, 0, 0, 0, 0
	for _, en := range first.Entries {
		n, err := strconv.Atoi(string(en.Value))
		require.NoError(t, err)
		state[string(en.Key)] = n
	}
	deadline := time.Now().Add(60 * time.Second)
	stopped := false
	for {
		if !stopped && received > burst+4000 {
			stopWriter() // the reader has read past the burst for a while
			stopped = true
		}
		if stopped && version == m.Version() {
			break
		}
		require.True(t, time.Now().Before(deadline), "the reader is at %d, the model at %d", version, m.Version())
		ev := s.next(t)
		received++
		switch ev.Kind {
		case "snapshot":
			snapshots++
			require.GreaterOrEqual(t, ev.Version, version, "a snapshot went back")
			state = map[string]int{}
			for _, en := range ev.Entries {
				n, err := strconv.Atoi(string(en.Value))
				require.NoError(t, err)
				require.LessOrEqual(t, uint64(n), ev.Version, "the snapshot at %d holds a value set at %d", ev.Version, n)
				state[string(en.Key)] = n
			}
		case "set":
			require.GreaterOrEqual(t, ev.Version, version, "a set after %d", version)
			n, err := strconv.Atoi(string(ev.Value))
			require.NoError(t, err)
			if ev.Version == version+1 {
				require.Equal(t, int(ev.Version), n, "the one change at %d", ev.Version)
			} else {
				// The difference of a resync of the gateway's mirror,
				// which fell behind the model's log: the entry's state
				// at the version.
				require.LessOrEqual(t, n, int(ev.Version), "a set at %d holds the value set at %d", ev.Version, n)
				diffs++
			}
			state[string(ev.Key)] = n
		case "delete":
			require.GreaterOrEqual(t, ev.Version, version, "a delete after %d", version)
			_, had := state[string(ev.Key)]
			require.True(t, had, "a delete at %d of a key the watcher does not hold", ev.Version)
			delete(state, string(ev.Key))
		case "stale", "live":
			// The gateway's link to the server may be declared dead and
			// dialled again when a loaded machine starves it for longer
			// than its 500 ms dead-peer timeout (CI did, once): the mirror
			// then resumes, and the changes it missed follow as above.
			outages++
			continue
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
		version = ev.Version
	}
	t.Logf("%d changes reached the reader as %d events, %d of them snapshots, %d of them the differences of resyncs, %d of them stale or live", m.Version()-first.Version, received, snapshots, diffs, outages)
	want := map[string]int{}
	for i := range 40 {
		if v, ok := m.Get(key(i)); ok {
			want[keyJSON(i)] = v
		}
	}
	require.Equal(t, want, state)
	s.close()
}
