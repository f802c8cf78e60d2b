package cache_test

// A hostile peer against a model's feed: it subscribes observers of its own
// by the thousand (docs/protocol.md §11.3), against a server that holds at
// most 200 objects for one peer. See broker/hostile_peers_test.go for the
// wire-level hostile peers; like those, this test reports the well-behaved
// client's latency before and during the attack rather than asserting it.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// deafObserver takes a batch and never acknowledges it: its Apply returns
// only when the connection ends. A model must not hold anyone else's
// writes back for it.
type deafObserver struct {
	remoteable.Referenceable
	applies atomic.Int64
}

func (o *deafObserver) Apply(ctx context.Context, b any) error {
	o.applies.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// eagerObserver acknowledges every batch at once, so that every change is
// pushed to it: the model's fan-out works for the attacker.
type eagerObserver struct {
	remoteable.Referenceable
	applies atomic.Int64
}

func (o *eagerObserver) Apply(ctx context.Context, b any) error {
	o.applies.Add(1)
	return nil
}

// medianPut returns the median latency of 200 Puts by the well-behaved
// client (fewer if they take more than 15 s in all), each of which its
// mirror must hold when the Put returns (read-your-writes): that is the
// check that the server still serves it, and serves it right.
func medianPut(ref *broker.Ref, mir *cache.Mirror[string, Item], key string) (time.Duration, error) {
	var lat []time.Duration
	budget := time.Now().Add(15 * time.Second)
	for i := 0; i < 200 && (i == 0 || time.Now().Before(budget)); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := ref.Call(ctx, "Put", nil, key, i)
		lat = append(lat, time.Since(start))
		cancel()
		if err != nil {
			return 0, fmt.Errorf("the well-behaved client's Put %d failed: %w", i, err)
		}
		if got, _ := mir.Get(key); got.Count != i {
			return 0, fmt.Errorf("after Put %d returned, the well-behaved client's mirror holds %d", i, got.Count)
		}
	}
	slices.Sort(lat)
	return lat[len(lat)/2], nil
}

// TestHostileSubscriptionFlood has peers call the feed's Subscribe
// thousands of times, against a server that holds at most 200 objects for
// one peer. Each subscription is one of those objects, so the excess fails
// with the typed ErrTooManyReferences, through a raw Subscribe as through a
// mirror. Meanwhile a well-behaved client changes the model and mirrors it:
// it is served, and its writes do not wait for the attackers' observers.
// Once the peers disconnect, the model has no subscriber of theirs left.
//
// The first peer subscribes observers that never acknowledge a batch and
// observers that acknowledge every one; the second only the latter, and
// then asks for mirrors. (Read-your-writes holds a peer's replies back
// until its own subscriptions have caught up with changes made during the
// call, docs/protocol.md §11.9: the first peer's ordinary calls would wait
// for its deaf observers until their deadline. The feed's own Subscribe is
// never held back.)
func TestHostileSubscriptionFlood(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	const maxExports, attempts = 200, 2000
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Name: "a", Count: 1}))
	s := startServer(t, st, broker.WithMaxExports(maxExports))

	_, good := dialStore(t, s)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, good.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	before, err := medianPut(good, mir, "good")
	require.NoError(t, err)

	// A peer holds on to its references: a handle that is garbage
	// collected releases its reference, which would end a subscription (or
	// drop the store) and make room for another.
	var (
		held   []*broker.Ref
		heldMu sync.Mutex
	)
	defer runtime.KeepAlive(&held)
	deaf, eager := &deafObserver{}, &eagerObserver{}
	subscriber := func(feed *broker.Ref, deafToo bool) func(i int) error {
		return func(i int) error {
			var obs any = eager
			if deafToo && i%2 == 0 {
				obs = deaf
			}
			var sub *broker.Ref
			err := feed.Call(ctx, "Subscribe", &sub, obs, "", uint64(0))
			if err == nil {
				heldMu.Lock()
				held = append(held, sub)
				heldMu.Unlock()
			}
			return err
		}
	}
	// flood subscribes attempts times through a new connection and returns
	// it, with the store and the subscribe function.
	flood := func(deafToo bool) (*broker.Conn, *broker.Ref, func(int) error) {
		conn, store := dialStore(t, s)
		var feed *broker.Ref
		require.NoError(t, store.Call(ctx, "Model", &feed))
		require.True(t, feed.Cacheable(), "a model travels as its feed")
		heldMu.Lock()
		held = append(held, store, feed)
		heldMu.Unlock()
		subscribe := subscriber(feed, deafToo)
		subs := 0
		for i := 0; i < attempts; i++ {
			if err := subscribe(i); err != nil {
				require.ErrorIs(t, err, broker.ErrTooManyReferences, "Subscribe %d", i)
				continue
			}
			subs++
		}
		// The peer holds the registry, the store, the feed and its
		// subscriptions.
		t.Logf("%d of %d subscriptions were accepted (export limit %d)", subs, attempts, maxExports)
		require.Positive(t, subs)
		require.Less(t, subs, maxExports, "the export limit bounds the subscriptions")
		return conn, store, subscribe
	}
	deafConn, _, subscribe := flood(true)
	eagerConn, eagerStore, _ := flood(false)
	require.Equal(t, 1+2*(maxExports-3), st.m.Subscribers())

	// A mirror, obtained the ordinary way, is refused with the same error.
	var extra *cache.Mirror[string, Item]
	err = eagerStore.Call(ctx, "Model", &extra)
	require.ErrorIs(t, err, broker.ErrTooManyReferences)

	// The attack goes on: one worker subscribes, another asks for mirrors,
	// all of which must fail with the typed error, while the well-behaved
	// client writes and mirrors.
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		rounds atomic.Int64
	)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; ; r++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if w == 0 {
					err = subscribe(r)
				} else {
					var m *cache.Mirror[string, Item]
					if err = eagerStore.Call(ctx, "Model", &m); err == nil {
						m.Close()
					}
				}
				if !errors.Is(err, broker.ErrTooManyReferences) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("worker %d, round %d: want ErrTooManyReferences, got %v", w, r, err))
					mu.Unlock()
					return
				}
				rounds.Add(1)
			}
		}()
	}
	during, measureErr := medianPut(good, mir, "good")
	stats := s.srv.Stats()
	close(stop)
	wg.Wait()
	require.NoError(t, measureErr)
	for _, err := range errs {
		t.Error(err)
	}
	t.Logf("latency under attack %q: median Put %v before, %v during (%d hostile rounds): ratio %.2f",
		"thousands of subscriptions", before, during, rounds.Load(), float64(during)/float64(before))
	t.Logf("server during the attack: %d observers fed, %d exports; the attackers' observers got %d batches (deaf) and %d (eager)",
		stats.Observers, stats.Exports, deaf.applies.Load(), eager.applies.Load())
	require.Positive(t, eager.applies.Load(), "the eager observers were fed")

	// Once the peers are gone, so are their subscriptions.
	require.NoError(t, deafConn.Close())
	require.NoError(t, eagerConn.Close())
	testkit.Eventually(t, "the hostile peers' subscriptions end", func() bool { return st.m.Subscribers() == 1 })
	n, err := medianPut(good, mir, "after")
	require.NoError(t, err, "the well-behaved client is still served (median %v)", n)
	require.NoError(t, mir.Close())
	testkit.Eventually(t, "no subscriber is left", func() bool { return st.m.Subscribers() == 0 })
}
