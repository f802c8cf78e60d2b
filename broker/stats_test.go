package broker

import (
	"encoding/json"
	"expvar"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestServerStats: a server sums its connections and counts the peers it
// accepted and refused; the sums go back to nothing when the peers leave,
// and the snapshot publishes through expvar as JSON.
func TestServerStats(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService(), WithToken("s3cret"))
	st := srv.Stats()
	assert.Equal(t, ServerStats{}, st, "nothing yet")

	a := dial(t, addr, WithToken("s3cret"))
	b := dial(t, addr, WithToken("s3cret"))
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithToken("wrong"))
	require.ErrorIs(t, err, ErrAuthFailed)
	c1, err := Call[*Ref](testkit.Ctx(t, 30*time.Second), a.Root(), "NewCounter")
	require.NoError(t, err)
	_, err = Call[*Ref](testkit.Ctx(t, 30*time.Second), b.Root(), "NewCounter")
	require.NoError(t, err)

	testkit.Eventually(t, "two roots and two counters", func() bool { return srv.Stats().Exports == 4 })
	// The refusal reaches the dialer before the server counts it.
	testkit.Eventually(t, "the wrong token counted", func() bool { return srv.Stats().Refused == 1 })
	st = srv.Stats()
	assert.Equal(t, 2, st.Conns)
	assert.Equal(t, int64(2), st.Accepted)
	assert.Equal(t, int64(1), st.Refused, "the wrong token")
	assert.Positive(t, st.BytesIn)
	assert.Positive(t, st.BytesOut)
	assert.Equal(t, 1, a.Stats().Imports)

	v := expvar.Func(func() any { return srv.Stats() })
	var fromVar map[string]any
	require.NoError(t, json.Unmarshal([]byte(v.String()), &fromVar))
	assert.Equal(t, 4.0, fromVar["exports"])
	assert.Equal(t, 2.0, fromVar["conns"])

	c1.Release()
	testkit.Eventually(t, "a released counter is dropped", func() bool { return srv.Stats().Exports == 3 })
	a.Close()
	b.Close()
	<-a.Done()
	<-b.Done()
	testkit.Eventually(t, "both gone", func() bool { return srv.Stats().Conns == 0 })
	st = srv.Stats()
	assert.Equal(t, 0, st.Exports)
	assert.Equal(t, 0, st.CallsIn)
}

// TestItemLimitsFailTheCallNotTheLink: a call or a result holding more
// items than the receiver accepts (in one container, or in all) fails on
// the sender's side with ErrMessageTooLarge; the link stays up.
func TestItemLimitsFailTheCallNotTheLink(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithMaxMessageSize(16<<20))
	cl := dial(t, addr, WithMaxMessageSize(16<<20))
	ctx := testkit.Ctx(t, 30*time.Second)
	wide := make([]int, 140_000) // over 131072 in one array
	err := cl.Root().Call(ctx, "Keep", nil, wide)
	require.ErrorIs(t, err, ErrMessageTooLarge)
	assert.Contains(t, err.Error(), "the call")
	many := make([][]int, 9) // 9 × 120000 items: over 1048576 in all
	for i := range many {
		many[i] = make([]int, 120_000)
	}
	err = cl.Root().Call(ctx, "Keep", nil, many)
	require.ErrorIs(t, err, ErrMessageTooLarge)
	assert.Contains(t, err.Error(), "items in all")
	require.NoError(t, cl.Root().Call(ctx, "Keep", nil, many[:8]), "8 × 120000 is within the limits")
	_, err = Call[any](ctx, cl.Root(), "Kept")
	require.NoError(t, err, "a result within the limits comes back")
	assert.Nil(t, cl.Err())
}

// blockedWriter is a stream whose writes wait until it is opened.
type blockedWriter struct{ open chan struct{} }

func (w *blockedWriter) Write(b []byte) (int, error)      { <-w.open; return len(b), nil }
func (w *blockedWriter) SetWriteDeadline(time.Time) error { return nil }

// TestPostCapCountsOnlyPostedBytes: what send queued (a large message
// behind a write in progress) does not count against the cap on what post
// may queue for a peer that does not read.
func TestPostCapCountsOnlyPostedBytes(t *testing.T) {
	leakcheck.Check(t)
	w := &blockedWriter{open: make(chan struct{})}
	var failed error
	s := newSender(w, time.Minute, func(err error) { failed = err })
	defer func() { s.stop(ErrClosed); s.wait() }()
	ctx := testkit.Ctx(t, 30*time.Second)
	writing := make(chan error, 1)
	go func() { writing <- s.send(ctx, []byte("first"), false) }() // blocks in Write
	testkit.Eventually(t, "the first write started", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.busy })
	require.NoError(t, s.send(ctx, make([]byte, 9<<20), false), "queued behind it")
	s.post(make([]byte, 12))
	s.mu.Lock()
	assert.NoError(t, s.err, "a small post after a large send is fine")
	s.mu.Unlock()
	for range (maxPosted / (1 << 20)) + 1 {
		s.post(make([]byte, 1<<20))
	}
	s.mu.Lock()
	assert.ErrorIs(t, s.err, ErrWriteTimeout, "posts beyond the cap fail the sender")
	s.mu.Unlock()
	assert.ErrorIs(t, failed, ErrWriteTimeout)
	close(w.open)
	require.NoError(t, <-writing)
}

// failingWriter is a stream whose first write waits until it is opened and
// then fails, as a yamux write that timed out; it counts the writes after.
type failingWriter struct {
	open  chan struct{}
	mu    sync.Mutex
	calls int
}

func (w *failingWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.calls++
	first := w.calls == 1
	w.mu.Unlock()
	if !first {
		return len(b), nil
	}
	<-w.open
	return 0, yamux.ErrConnectionWriteTimeout
}

func (w *failingWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *failingWriter) writes() int { w.mu.Lock(); defer w.mu.Unlock(); return w.calls }

// TestNoWriteAfterFailedGoodbye: once the goodbye's write failed, nothing is
// written on the stream again, not even what was queued behind it. yamux
// v0.1.2 keeps a timed-out write's late result in the stream's sendErr, so
// the next write can return before its header is sent and the one after
// rewrites that header while the send loop still copies it (a data race
// seen in FuzzGatewayRequest under load).
func TestNoWriteAfterFailedGoodbye(t *testing.T) {
	leakcheck.Check(t)
	w := &failingWriter{open: make(chan struct{})}
	s := newSender(w, time.Minute, func(error) {})
	defer func() { s.stop(ErrClosed); s.wait() }()
	done := make(chan struct{})
	go func() { s.tryFinal([]byte("goodbye"), time.Minute); close(done) }()
	testkit.Eventually(t, "the goodbye is being written", func() bool { return w.writes() == 1 })
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, s.send(ctx, []byte("queued behind it"), false))
	close(w.open)
	<-done
	require.ErrorIs(t, s.send(ctx, []byte("after it"), false), yamux.ErrConnectionWriteTimeout, "the failure is kept")
	s.post([]byte("posted after it"))
	s.uncork()
	time.Sleep(50 * time.Millisecond) // a drain goroutine, had one started, would have written by now
	assert.Equal(t, 1, w.writes(), "no write after the failed one")
}
