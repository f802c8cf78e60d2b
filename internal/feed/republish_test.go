package feed

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// switchCaller is a follower's source that the test moves to another
// feed: the mirror resubscribes there with the epoch and version it has.
type switchCaller struct{ ref atomic.Pointer[broker.Ref] }

func (c *switchCaller) Call(ctx context.Context, method string, reply any, args ...any) error {
	return c.ref.Load().Call(ctx, method, reply, args...)
}

// checkedSink is an intSink that checks every event against the state it
// holds: an event's previous value is the one it holds (a gap, a change
// missed, shows as another), and versions only grow (a change applied
// twice shows as a version not after the last).
type checkedSink struct {
	mu      sync.Mutex
	state   map[string]int
	version uint64
	errs    []string
}

func (s *checkedSink) Decode(c Change) (any, error) { return (&intSink{}).Decode(c) }
func (s *checkedSink) Stale(bool)                   {}
func (s *checkedSink) Commit(events []Event, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reset {
		s.version = 0
	}
	last := s.version
	for _, ev := range events {
		kv := ev.Decoded.([2]any)
		k := kv[0].(string)
		if !reset && ev.Version <= last {
			s.errs = append(s.errs, fmt.Sprintf("event of %s at version %d after version %d", k, ev.Version, last))
		}
		old, had := s.state[k]
		if ev.HadPrev != had {
			s.errs = append(s.errs, fmt.Sprintf("%s at %d: had %v, the event says %v", k, ev.Version, had, ev.HadPrev))
		} else if had {
			var prev int
			if err := broker.Unmarshal(ev.Prev, &prev); err != nil || prev != old {
				s.errs = append(s.errs, fmt.Sprintf("%s at %d: held %d, the event's previous %d", k, ev.Version, old, prev))
			}
		}
		if ev.Deleted {
			delete(s.state, k)
		} else {
			s.state[k] = kv[1].(int)
		}
		s.version = max(s.version, ev.Version)
	}
}

// TestRepublishedMirrorServesResumes: a mirror that applied changes while
// nobody followed it (no log) is then served on, while its model keeps
// changing, to a mirror that followed the model directly and now resumes
// from the mirror with the (epoch, version) it has: before the mirror's
// log begins (a relay restarted under it, say), within it (in the odd
// rounds another mirror subscribed first), or past the mirror's version
// (the model's direct followers may be ahead). Each gets a snapshot or the steps, never a gap
// or a change twice (checkedSink), and ends equal to the model. The
// writer runs throughout, so the mirror's first subscriber (Subscribe
// setting Feed.unlogged) races its applying of batches.
func TestRepublishedMirrorServesResumes(t *testing.T) {
	leakcheck.Check(t)
	for round := range 4 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) { republishRound(t, round) })
	}
}

func republishRound(t *testing.T, round int) {
	src := New(0, nil)
	for i := range 50 {
		src.Set(enc(fmt.Sprint("k", i)), enc(i))
	}
	dial := serveFeed(t, src)
	ctx := testkit.Ctx(t, 60*time.Second)
	var lost atomic.Int32
	opts := Options{OnLost: func(error) { lost.Add(1) }}

	// The downstream mirrors first follow the model, through a proxy
	// that will cut them off.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(src.Publisher())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-errc })
	proxy, err := faultnet.New(ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	conn, err := broker.Dial(ctx, "tcp", proxy.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })

	var downs []*Follower
	var sinks []*checkedSink
	var callers []*switchCaller
	for range 2 {
		sc := &switchCaller{}
		sc.ref.Store(conn.Root())
		sink := &checkedSink{state: map[string]int{}}
		fl := NewFollower(sc, sink, opts)
		require.NoError(t, fl.Attach(ctx))
		t.Cleanup(fl.Close)
		downs, sinks, callers = append(downs, fl), append(sinks, sink), append(callers, sc)
	}

	mid := NewFollower(dial(), &checkedSink{state: map[string]int{}}, opts)
	require.NoError(t, mid.Attach(ctx))
	t.Cleanup(mid.Close)

	stopWriter := testkit.Writer(t, func(i int) {
		if i%7 == 3 {
			src.Delete(enc(fmt.Sprint("k", (i*13)%60)))
		} else {
			src.Set(enc(fmt.Sprint("k", i%60)), enc(i))
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	})

	// The mirror applies changes with nobody following it.
	v := src.Version()
	testkit.Eventually(t, "the mirror follows", func() bool { return mid.Feed().Version() >= v+200 })
	n, _, _ := logState(mid.Feed())
	require.Zero(t, n, "nobody follows the mirror: no log")

	midRef := serveFeed(t, mid.Feed())
	if round%2 == 1 {
		// Someone else subscribes first: the mirror logs from then on.
		other := NewFollower(midRef(), nil, opts)
		require.NoError(t, other.Attach(ctx))
		t.Cleanup(other.Close)
	}
	for _, sc := range callers {
		sc.ref.Store(midRef())
	}
	_, _, logFrom := logState(mid.Feed())
	t.Logf("before the cut: mirror at %d, its log from %d, downstream at %d and %d", mid.Feed().Version(), logFrom, downs[0].Feed().Version(), downs[1].Feed().Version())
	proxy.Reset() // both resume from the mirror, from versions before its log
	testkit.Eventually(t, "the downstream mirrors resubscribed to the mirror", func() bool {
		return src.Subscribers() == 1 && mid.Feed().Subscribers() == 2+round%2
	})
	time.Sleep(time.Duration(round) * 20 * time.Millisecond)
	stopWriter()

	last := src.Version()
	for i, fl := range downs {
		testkit.Eventually(t, "the downstream mirror reaches the model", func() bool { return fl.Feed().Version() == last })
		want := map[string]int{}
		src.Read(func(_ string, _ uint64, st State) {
			for k, v := range st.All() {
				var key string
				var val int
				require.NoError(t, broker.Unmarshal(k, &key))
				require.NoError(t, broker.Unmarshal(v, &val))
				want[key] = val
			}
		})
		s := sinks[i]
		fl.Feed().Read(func(string, uint64, State) {})
		s.mu.Lock()
		require.Empty(t, s.errs)
		require.Equal(t, want, s.state)
		s.mu.Unlock()
	}
	require.Zero(t, lost.Load(), "no mirror lost its source")
}
