package cache_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// tokenSpy is a hand-made observer that keeps the token of the first batch.
type tokenSpy struct {
	remoteable.Referenceable
	tok atomic.Pointer[string]
}

func (s *tokenSpy) Apply(ctx context.Context, b feed.Batch) error {
	if b.Token != "" {
		s.tok.Store(&b.Token)
	}
	return nil
}

// feedCalls is how many times the other subscriber presents the token
// (with 0 the victim resumes and the test passes).
var feedCalls = 5

// TestResumeWindowNotDefeatedByRepeatedFeedCalls checks that a relay keeps
// a mirror for its resume window while a holder whose link died is away,
// even when another peer holding the relay mirror's token presents it
// (tether.feed) several times: the count of holders away is kept per
// identity, so only the holder that left can close its own window. When it
// was one count for all, one call per holder away was enough: the relay
// dropped its mirror one second after the last holder left, and the holder
// whose link died, coming back, found the token unknown and (Model not
// being idempotent) lost its source.
func TestResumeWindowNotDefeatedByRepeatedFeedCalls(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	model := cache.NewMap[string, Item]()
	srv := startPlainServer(t, model)
	relay := startRelay(t, connect(t, srv.addr))
	down := proxyTo(t, relay.addr)
	mir := plainMirror(t, connect(t, down.Addr()))
	var lost atomic.Int32
	mir.Lost.Connect(func(error) { lost.Add(1) })

	// Another subscriber of the relay, which learns the relay mirror's token.
	c, err := broker.Dial(ctx, "tcp", relay.addr, broker.WithName("other"))
	require.NoError(t, err)
	store, err := broker.Call[*broker.Ref](ctx, c.Root(), "Lookup", "store")
	require.NoError(t, err)
	pub, err := broker.Call[*broker.Ref](ctx, store, "Model")
	require.NoError(t, err)
	spy := &tokenSpy{}
	sub, err := broker.Call[*broker.Ref](ctx, pub, "Subscribe", spy, "", uint64(0))
	require.NoError(t, err)
	testkit.Eventually(t, "the token", func() bool { return spy.tok.Load() != nil })
	tok := *spy.tok.Load()

	// The victim's link dies (the relay notices: away = 1).
	down.Refuse(true)
	down.Reset()
	testkit.Eventually(t, "stale", mir.Stale)
	time.Sleep(time.Second) // the relay's dead-peer timeout
	// The other subscriber presents the token a few times, then leaves cleanly.
	for i := 0; i < feedCalls; i++ {
		r, err := broker.Call[*broker.Ref](ctx, c.Root(), captable.Method, tok)
		require.NoError(t, err)
		r.Release()
	}
	sub.Release()
	pub.Release()
	store.Release()
	c.Close()
	<-c.Done()
	time.Sleep(1500 * time.Millisecond) // past the idle grace, within the resume window
	down.Restore()
	for i := 0; i < 3; i++ {
		require.NoError(t, model.Set(fmt.Sprint("k", i), Item{Count: i}))
	}
	testkit.Eventually(t, "the victim resumes or is lost", func() bool {
		return lost.Load() > 0 || (!mir.Stale() && mir.Version() == model.Version())
	})
	require.Zero(t, lost.Load(), "victim lost: %v", mir.Err())
}
