package broker

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// recordingWriter is a stream that keeps what is written to it, yielding
// inside each write so that senders race with the writer's exit.
type recordingWriter struct {
	mu  sync.Mutex
	got bytes.Buffer
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	time.Sleep(time.Duration(len(b)%3) * time.Microsecond)
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.got.Write(b)
}

func (w *recordingWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *recordingWriter) len() int { w.mu.Lock(); defer w.mu.Unlock(); return w.got.Len() }

// TestDrainLosesNoFrame: frames posted and sent from many goroutines, while
// the drain goroutine keeps exiting and starting again, all reach the
// stream, each whole: a frame queued as the drain goroutine decides to exit
// is written by it or by the next writer.
func TestDrainLosesNoFrame(t *testing.T) {
	leakcheck.Check(t)
	w := &recordingWriter{}
	s := newSender(w, time.Minute, func(err error) { t.Errorf("write failed: %v", err) })
	ctx := testkit.Ctx(t, 30*time.Second)
	const writers, frames = 8, 300
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			frame := bytes.Repeat([]byte{byte('a' + g)}, 1+g)
			for i := range frames {
				switch i % 3 {
				case 0:
					s.post(frame)
				case 1:
					assert.NoError(t, s.send(ctx, frame, false))
				default:
					assert.NoError(t, s.send(ctx, frame, true)) // left to a drain goroutine
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // let the drain goroutine run dry and exit
				}
			}
		}()
	}
	wg.Wait()
	want := 0
	for g := range writers {
		want += frames * (1 + g)
	}
	testkit.Eventually(t, "every frame written", func() bool { return w.len() == want })
	s.mu.Lock()
	assert.False(t, s.busy, "the stream's owner let go")
	s.mu.Unlock()
	s.stop(ErrClosed)
	waitReturns(t, "the drain goroutine exits", s.wait)
}

// waitReturns fails the test if f does not return within 10 s.
func waitReturns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: it did not", what)
	}
}

// deadlineWriterStub is a stream whose writes wait until the write
// deadline, as a yamux stream's do when the peer stops reading.
type deadlineWriterStub struct {
	mu       sync.Mutex
	deadline time.Time
}

func (w *deadlineWriterStub) Write([]byte) (int, error) {
	w.mu.Lock()
	d := w.deadline
	w.mu.Unlock()
	if d.IsZero() {
		panic("a write without a deadline")
	}
	time.Sleep(time.Until(d))
	return 0, os.ErrDeadlineExceeded
}

func (w *deadlineWriterStub) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	w.deadline = t
	w.mu.Unlock()
	return nil
}

// TestDrainWriteHasDeadline: a frame the drain goroutine writes (a post, as
// the reader makes) is bounded by the write timeout like any other: the
// sender fails with ErrWriteTimeout, and the goroutine exits.
func TestDrainWriteHasDeadline(t *testing.T) {
	leakcheck.Check(t)
	failed := make(chan error, 1)
	s := newSender(&deadlineWriterStub{}, 100*time.Millisecond, func(err error) { failed <- err })
	s.post([]byte("an answer"))
	select {
	case err := <-failed:
		assert.ErrorIs(t, err, ErrWriteTimeout)
	case <-time.After(10 * time.Second):
		t.Fatal("the write never timed out")
	}
	require.ErrorIs(t, s.send(context.Background(), []byte("later"), false), ErrWriteTimeout, "the failure is kept")
	s.stop(ErrClosed)
	waitReturns(t, "the drain goroutine exits", s.wait)
}

// stackWriter records each write and whether a drain goroutine made it.
type stackWriter struct {
	mu      sync.Mutex
	writes  []string
	byDrain []bool
}

func (w *stackWriter) Write(b []byte) (int, error) {
	stack := make([]byte, 4096)
	stack = stack[:runtime.Stack(stack, false)]
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(b))
	w.byDrain = append(w.byDrain, bytes.Contains(stack, []byte("(*sender).drain")))
	return len(b), nil
}

func (w *stackWriter) SetWriteDeadline(time.Time) error { return nil }

// TestLoneSendTakesOverPost: a lone send right after a post (a handler's
// Release, then its result) does not wait for the drain goroutine the post
// started: it writes both frames itself, in one write and in order, and
// the drain goroutine exits without writing. The drain goroutine may win
// the race now and then, so the test asks only that the lone sender wrote
// in some rounds, and that every round's frames went out once, in order.
func TestLoneSendTakesOverPost(t *testing.T) {
	leakcheck.Check(t)
	w := &stackWriter{}
	s := newSender(w, time.Minute, func(err error) { t.Errorf("write failed: %v", err) })
	ctx := testkit.Ctx(t, 30*time.Second)
	const rounds = 50
	for i := range rounds {
		s.post([]byte{'p', byte(i)})
		require.NoError(t, s.send(ctx, []byte{'s', byte(i)}, false))
		testkit.Eventually(t, "the round's frames are written", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return !s.busy
		})
	}
	s.stop(ErrClosed)
	waitReturns(t, "the drain goroutines exit", s.wait)
	var all []byte
	bySender := 0
	for i, got := range w.writes {
		all = append(all, got...)
		if !w.byDrain[i] && len(got) == 4 {
			bySender++
		}
	}
	var want []byte
	for i := range rounds {
		want = append(want, 'p', byte(i), 's', byte(i))
	}
	require.Equal(t, want, all, "every frame once, in order")
	assert.Positive(t, bySender, "a lone send wrote the posted frame with its own")
}
