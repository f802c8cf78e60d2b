package feed

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// gatedSink is an intSink whose Commit blocks, after the first, until
// gate is closed: the mirror then stops acknowledging (its Apply does not
// return) while its owner keeps writing.
type gatedSink struct {
	intSink
	mu      sync.Mutex
	commits int
	gate    chan struct{}
}

func (s *gatedSink) Commit(events []Event, reset bool) {
	s.mu.Lock()
	s.commits++
	n := s.commits
	s.mu.Unlock()
	if n > 1 {
		<-s.gate
	}
	s.intSink.Commit(events, reset)
}

// serveFeed publishes f's Publisher as the root of a server on loopback
// TCP and returns a connection's reference to it.
func serveFeed(t *testing.T, f *Feed) func() *broker.Ref {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(f.Publisher())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-errc })
	return func() *broker.Ref {
		conn, err := broker.Dial(testkit.Ctx(t, 30*time.Second), "tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn.Root()
	}
}

// TestSilentSubscriberWhileWriterRunsFarPastTheLog: one mirror stops
// acknowledging while the owner writes fifty logs' worth of changes. The
// writer is not held back, another mirror follows to the last version
// meanwhile, the owner's log stays within its bound (the silent
// subscription keeps a version, not the steps after it), and once the
// silent mirror acknowledges again it catches up, through a snapshot, to
// exactly the owner's state.
func TestSilentSubscriberWhileWriterRunsFarPastTheLog(t *testing.T) {
	leakcheck.Check(t)
	const logSize, keys = 64, 40
	src := New(logSize, nil)
	dial := serveFeed(t, src)
	ctx := testkit.Ctx(t, 60*time.Second)

	slow := &gatedSink{intSink: intSink{state: map[string]int{}}, gate: make(chan struct{})}
	fast := &intSink{state: map[string]int{}}
	var fls []*Follower
	for _, sink := range []Sink{slow, fast} {
		fl := NewFollower(dial(), sink, Options{})
		require.NoError(t, fl.Attach(ctx))
		t.Cleanup(fl.Close)
		fls = append(fls, fl)
	}
	src.Set(enc("k0"), enc(-1)) // the slow mirror's second commit blocks on it
	testkit.Eventually(t, "the slow mirror blocked", func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return slow.commits == 2
	})

	for i := range 50 * logSize {
		src.Set(enc(fmt.Sprint("k", i%keys)), enc(i))
		if i%5 == 0 {
			src.Delete(enc(fmt.Sprint("k", (i+3)%keys)))
		}
	}
	last := src.Version()
	testkit.Eventually(t, "the other mirror follows", func() bool { return fls[1].Feed().Version() == last })
	src.mu.Lock()
	logLen, steps := src.logLen, len(src.log)
	src.mu.Unlock()
	require.LessOrEqual(t, logLen, logSize+keys, "the log is bounded")
	require.LessOrEqual(t, steps, logSize+keys)

	close(slow.gate)
	testkit.Eventually(t, "the silent mirror catches up", func() bool { return fls[0].Feed().Version() == last })
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
	require.Equal(t, want, fast.state)
	fls[0].Feed().Read(func(string, uint64, State) {}) // the sink is written under the mirror's feed lock
	require.Equal(t, want, slow.state)
}

// TestManySubscribersShareBatches: forty untyped mirrors (a relay's kind)
// on four connections follow a writer's burst, through the batches of
// steps and the snapshots they share: each ends at the last version with
// exactly the owner's entries.
func TestManySubscribersShareBatches(t *testing.T) {
	leakcheck.Check(t)
	src := New(0, nil)
	dial := serveFeed(t, src)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var fls []*Follower
	for range 4 {
		ref := dial()
		for range 10 {
			fl := NewFollower(ref, nil, Options{})
			require.NoError(t, fl.Attach(ctx))
			t.Cleanup(fl.Close)
			fls = append(fls, fl)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 3000 {
			src.Set(enc(fmt.Sprint("k", i%100)), enc(i))
		}
	}()
	wg.Wait()
	last := src.Version()
	for i, fl := range fls {
		testkit.Eventually(t, fmt.Sprint("mirror ", i), func() bool { return fl.Feed().Version() == last })
	}
	want := entriesOf(src)
	for i, fl := range fls {
		require.Equal(t, want, entriesOf(fl.Feed()), "mirror %d", i)
	}
}

// entriesOf returns a feed's entries, keyed by their key's bytes.
func entriesOf(f *Feed) map[string]string {
	out := map[string]string{}
	f.Read(func(_ string, _ uint64, st State) {
		for k, v := range st.All() {
			out[string(k)] = string(v)
		}
	})
	return out
}
