package cache_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestSubscriptionQuota: a server holds at most n subscriptions to its
// models for one connection (broker.WithMaxSubscriptions). The n+1th
// Subscribe fails with ErrTooManyReferences, saying the limit and the
// option that raises it, and so does a call that would give the peer
// another mirror; once the peer releases a subscription it may make one
// more; another connection has its own quota.
func TestSubscriptionQuota(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	const quota = 4
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Name: "a", Count: 1}))
	s := startServer(t, st, broker.WithMaxSubscriptions(quota))

	// dialFeed dials a connection and returns the store and the model's
	// feed on it.
	dialFeed := func() (store, feed *broker.Ref) {
		_, store = dialStore(t, s)
		require.NoError(t, store.Call(ctx, "Model", &feed))
		require.True(t, feed.Cacheable())
		return store, feed
	}
	obs := &eagerObserver{}
	subscribe := func(feed *broker.Ref) (*broker.Ref, error) {
		var sub *broker.Ref
		err := feed.Call(ctx, "Subscribe", &sub, obs, "", uint64(0))
		return sub, err
	}

	store, feed := dialFeed()
	var subs []*broker.Ref
	for i := 0; i < quota; i++ {
		sub, err := subscribe(feed)
		require.NoError(t, err, "subscription %d", i+1)
		subs = append(subs, sub)
	}
	_, err := subscribe(feed)
	require.ErrorIs(t, err, broker.ErrTooManyReferences)
	require.True(t, strings.Contains(err.Error(), "4 subscriptions") && strings.Contains(err.Error(), "WithMaxSubscriptions"),
		"the error says the limit and the option that raises it: %v", err)
	t.Logf("over the quota: %v", err)
	var mir *cache.Mirror[string, Item]
	err = store.Call(ctx, "Model", &mir)
	require.ErrorIs(t, err, broker.ErrTooManyReferences, "a mirror is a subscription too")
	require.Equal(t, quota, st.m.Subscribers())

	// Releasing one makes room for one (the Release travels to the server
	// on its own, so the new Subscribe may have to be tried again).
	subs[0].Release()
	testkit.Eventually(t, "room for a subscription", func() bool {
		sub, err := subscribe(feed)
		if err != nil {
			return false
		}
		subs[0] = sub
		return true
	})
	_, err = subscribe(feed)
	require.ErrorIs(t, err, broker.ErrTooManyReferences, "the quota is full again")

	// Another connection has a quota of its own, which its mirrors count
	// in.
	otherStore, otherFeed := dialFeed()
	var m1, m2 *cache.Mirror[string, Item]
	require.NoError(t, otherStore.Call(ctx, "Model", &m1))
	require.NoError(t, otherStore.Call(ctx, "Model", &m2))
	t.Cleanup(func() { m1.Close(); m2.Close() })
	for i := 2; i < quota; i++ {
		_, err := subscribe(otherFeed)
		require.NoError(t, err, "subscription %d of the other connection", i+1)
	}
	_, err = subscribe(otherFeed)
	require.ErrorIs(t, err, broker.ErrTooManyReferences)
	require.Equal(t, 2*quota, st.m.Subscribers())

	for _, sub := range subs {
		sub.Release()
	}
	testkit.Eventually(t, "the released subscriptions end", func() bool { return st.m.Subscribers() == quota })
}
