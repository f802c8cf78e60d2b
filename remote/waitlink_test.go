package remote

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestWaitForLinkWaitsForTheRelaysUpstream: client → relay → server, with
// the relay↔server link cut and the relay's client backing off. A call
// made without WaitForLink fails at once with ErrDisconnected, naming the
// call and the hop; one made with WaitForLink is held by the relay, through
// failed redials, until the upstream link is back, and then succeeds; one
// whose deadline passes first fails with context.DeadlineExceeded.
func TestWaitForLinkWaitsForTheRelaysUpstream(t *testing.T) {
	leakcheck.Check(t)
	ch := startChain(t, nil)
	ctx := testkit.Ctx(t, time.Minute)
	users, err := ch.client.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	got, err := broker.Call[string](ctx, users, "Get", "before")
	require.NoError(t, err)
	require.Equal(t, "origin:before", got)

	ch.link.Refuse(true)
	ch.link.Reset()
	waitState(t, ch.up, Waiting)

	_, err = broker.Call[string](ctx, users, "Get", "hasty")
	require.ErrorIs(t, err, ErrDisconnected, "without WaitForLink the call fails fast")
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), `"Get" was not sent`, "it names the call")
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "one prefix: %v", err)

	type result struct {
		got string
		err error
	}
	patient, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	waited := make(chan result, 1)
	go func() {
		got, err := broker.Call[string](WaitForLink(patient), users, "Get", "patient")
		waited <- result{got, err}
	}()
	require.Eventually(t, func() bool { return ch.relay.Stats().CallsIn == 1 }, 10*time.Second, time.Millisecond,
		"the call reached the relay")
	// Through two more failed redials the relay's client goes back to
	// Waiting: a call that did not wait would have failed at the first.
	failures := ch.up.Stats().DialFailures
	require.Eventually(t, func() bool { return ch.up.Stats().DialFailures >= failures+2 }, 10*time.Second, time.Millisecond)
	waitState(t, ch.up, Waiting)
	select {
	case r := <-waited:
		t.Fatalf("a call that waits for the link returned while the relay's upstream was down: %q, %v", r.got, r.err)
	default:
	}
	ch.link.Restore()
	r := <-waited
	require.NoError(t, r.err)
	assert.Equal(t, "origin:patient", r.got)
	assert.Equal(t, Connected, ch.client.State())

	// The wait is bounded by the caller's deadline, which travels.
	ch.link.Refuse(true)
	ch.link.Reset()
	waitState(t, ch.up, Waiting)
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = broker.Call[string](WaitForLink(short), users, "Get", "late")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return ch.relay.Stats().CallsIn == 0 }, 10*time.Second, time.Millisecond,
		"the relay gave up on the call too")
	ch.link.Restore()
	require.NoError(t, ch.up.WaitConnected(ctx))
	got, err = broker.Call[string](ctx, users, "Get", "after")
	require.NoError(t, err)
	assert.Equal(t, "origin:after", got)
}

// TestWaitForLinkLookupThroughARelay: a lookup through a relay whose
// upstream is down waits for it too, when the caller waits for links.
func TestWaitForLinkLookupThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	ch := startChain(t, nil)
	ctx := testkit.Ctx(t, time.Minute)
	require.NoError(t, ch.client.WaitConnected(ctx))
	require.NoError(t, ch.up.WaitConnected(ctx))
	ch.link.Refuse(true)
	ch.link.Reset()
	waitState(t, ch.up, Waiting)

	_, err := ch.client.Registry().Lookup(ctx, "users")
	require.ErrorIs(t, err, ErrDisconnected)

	type result struct {
		users *Ref
		err   error
	}
	waited := make(chan result, 1)
	go func() {
		u, err := ch.client.Registry().Lookup(WaitForLink(ctx), "users")
		waited <- result{u, err}
	}()
	require.Eventually(t, func() bool { return ch.relay.Stats().CallsIn == 1 }, 10*time.Second, time.Millisecond)
	failures := ch.up.Stats().DialFailures
	require.Eventually(t, func() bool { return ch.up.Stats().DialFailures >= failures+2 }, 10*time.Second, time.Millisecond)
	ch.link.Restore()
	r := <-waited
	require.NoError(t, r.err)
	got, err := broker.Call[string](ctx, r.users, "Get", "alice")
	require.NoError(t, err)
	assert.Equal(t, "origin:alice", got)
}

// TestConnectionLostNamesTheCall: a call in flight on a lasting client's
// link when the link is reset fails with ErrConnectionLost, naming the
// method and the server by its announced name.
func TestConnectionLostNamesTheCall(t *testing.T) {
	leakcheck.Check(t)
	u := newUsers("x")
	s := startServer(t, "127.0.0.1:0", publish(t, u), broker.WithName("origin"))
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)

	held := make(chan error, 1)
	go func() { _, err := broker.Call[int64](ctx, users, "Hold"); held <- err }()
	u.waitHolding(t, "Hold", held)
	p.Reset()
	err = <-held
	require.ErrorIs(t, err, broker.ErrConnectionLost)
	assert.Contains(t, err.Error(), `"Hold" was in flight to peer "origin"`)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "one prefix: %v", err)
	t.Logf("the caller sees: %v", err)
}
