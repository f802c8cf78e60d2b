package feed

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/testkit"
)

// The lazy tail's hand-over, step by step: a change with no pusher
// waiting leaves its tail pending (Feed.publish); a pusher about to wait
// publishes it itself when the lock is free, or leaves it to the lock's
// holder, who publishes it as they unlock (Subscription.await,
// Feed.unlock). Each test checks one of those duties with the pusher's own
// code (await), so that a pusher or holder that skipped its part leaves
// await blocked, and the test fails, every time rather than by a rare
// interleaving (TestLastChangeArrivesAfterEveryBurst looks for those).

// awaiting runs s.await(t) and returns the channel its result arrives on.
func awaiting(s *Subscription, t *tail) <-chan bool {
	done := make(chan bool, 1)
	go func() { done <- s.await(t) }()
	return done
}

// requireWoken fails unless await returns true within testkit.Patience: a
// pusher left waiting for a tail nobody publishes (a lost wakeup).
func requireWoken(t *testing.T, done <-chan bool, f *Feed, want uint64) {
	t.Helper()
	select {
	case ok := <-done:
		require.True(t, ok)
	case <-time.After(testkit.Patience):
		t.Fatalf("lost wakeup: the pusher still waits %v after the change to version %d (pending %v, tail at %d)",
			testkit.Patience, want, f.pending.Load(), f.tail.Load().version)
	}
	require.Equal(t, want, f.tail.Load().version, "the tail published is the feed's last change")
}

// newAwaiter returns a subscription of f with only what await uses, and
// the function that ends it.
func newAwaiter(f *Feed) (*Subscription, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscription{f: f, ctx: ctx}, cancel
}

// TestChangeWithNoPusherWaitingIsPending: a change made while no pusher
// waits publishes no tail; a reader who asks for the tail (current) gets
// the change.
func TestChangeWithNoPusherWaitingIsPending(t *testing.T) {
	f := New(0, nil)
	t0 := f.tail.Load()
	f.Set(enc("k"), enc(1))
	require.True(t, f.pending.Load())
	require.Same(t, t0, f.tail.Load())
	require.Equal(t, uint64(1), f.current().version)
	require.False(t, f.pending.Load())
	f.Set(enc("k"), enc(2))
	require.Equal(t, uint64(2), f.tryCurrent().version, "the lock is free: a pusher's try publishes")
}

// TestPusherPublishesAPendingTailWhenTheLockIsFree: the last change of a
// burst left its tail pending and nobody holds the lock: the pusher that
// comes to wait must publish the tail itself, since no change follows to
// ring for it.
func TestPusherPublishesAPendingTailWhenTheLockIsFree(t *testing.T) {
	f := New(0, nil)
	t0 := f.tail.Load()
	f.Set(enc("k"), enc(1))
	s, cancel := newAwaiter(f)
	defer cancel()
	requireWoken(t, awaiting(s, t0), f, 1)
}

// TestHolderPublishesForAPusherWhoseTryFailed: the pusher comes to wait
// while another holds the lock, with the last change pending. Its TryLock
// fails and it waits on the bell; the holder, whoever it is, must publish
// the tail as it unlocks. Checked for the writer itself (the change made
// under the lock) and for a reader (Read), each pusher counted as a
// waiter, and given time to fail its try, before the holder unlocks.
func TestHolderPublishesForAPusherWhoseTryFailed(t *testing.T) {
	hold := func(t *testing.T, f *Feed, s *Subscription, t0 *tail) <-chan bool {
		done := awaiting(s, t0)
		testkit.Eventually(t, "the pusher counted as a waiter", f.bell.waiting)
		// Not a timing assertion: time for the pusher to fail its
		// TryLock and wait on the bell, the interleaving under test.
		time.Sleep(20 * time.Millisecond)
		select {
		case <-done:
			t.Fatal("the pusher returned while the lock was held and nothing was published")
		default:
		}
		return done
	}
	t.Run("writer", func(t *testing.T) {
		f := New(0, nil)
		t0 := f.tail.Load()
		s, cancel := newAwaiter(f)
		defer cancel()
		f.mu.Lock()
		f.setLocked(enc("k"), enc(1))
		done := hold(t, f, s, t0)
		f.unlock()
		requireWoken(t, done, f, 1)
	})
	t.Run("reader", func(t *testing.T) {
		f := New(0, nil)
		t0 := f.tail.Load()
		f.Set(enc("k"), enc(1))
		s, cancel := newAwaiter(f)
		defer cancel()
		var done <-chan bool
		f.Read(func(string, uint64, State) { done = hold(t, f, s, t0) })
		requireWoken(t, done, f, 1)
	})
	t.Run("several pushers", func(t *testing.T) {
		f := New(0, nil)
		t0 := f.tail.Load()
		f.Set(enc("k"), enc(1))
		f.mu.Lock()
		var dones []<-chan bool
		for range 4 {
			s, cancel := newAwaiter(f)
			defer cancel()
			dones = append(dones, hold(t, f, s, t0))
		}
		f.setLocked(enc("k"), enc(2)) // made while they wait: rings them
		for _, done := range dones {
			requireWoken(t, done, f, 2)
		}
		// Woken, they no longer count: the next change is pending again.
		f.unlock()
		f.Set(enc("k"), enc(3))
		require.True(t, f.pending.Load())
	})
}
