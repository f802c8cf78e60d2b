package feed

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestObserverDroppedWithItsLinkIsNoError: when a subscription's link
// dies, the broker drops the connection's exports after the connection's
// Closed fires, so the observer fails with errDropped ("the model's owner
// ended the subscription") as well. The follower, seeing both, must take
// it as the link loss it is: Err stays nil, as it does once the mirror
// resumes. Before, awaitLoss's select picked either, and half the time Err
// reported errDropped for good (TestViewIsEnoughForTypedCode failed about
// once in fifty runs under load).
func TestObserverDroppedWithItsLinkIsNoError(t *testing.T) {
	leakcheck.Check(t)
	src := New(0, nil)
	sub := serveFeed(t, src)()
	require.NoError(t, sub.Conn().Close())
	<-sub.Conn().Done()
	for range 64 { // the select picks at random when both are ready
		obs := &observer{first: make(chan struct{}), failed: make(chan struct{})}
		obs.Unexported() // what the broker's dropExports does
		fl := &Follower{sub: sub, obs: obs}
		fl.ctx, fl.cancel = context.WithCancel(context.Background())
		require.True(t, fl.awaitLoss(), "the subscription is lost")
		require.NoError(t, fl.Err(), "a link loss is no failure to resume")
		fl.cancel()
	}

	// An observer the owner dropped while the link lives is an error.
	live := serveFeed(t, src)()
	obs := &observer{first: make(chan struct{}), failed: make(chan struct{})}
	obs.Unexported()
	fl := &Follower{sub: live, obs: obs}
	fl.ctx, fl.cancel = context.WithCancel(context.Background())
	defer fl.cancel()
	require.True(t, fl.awaitLoss())
	require.ErrorIs(t, fl.Err(), errDropped)
}
