package mistakes

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remote"
)

// relayTo serves a relay of the server at addr (guide §6) and returns its
// address.
func relayTo(t *testing.T, addr string, opts ...remote.Option) string {
	t.Helper()
	up, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", addr, append([]remote.Option{remote.WithBroker(broker.WithName("edge"))}, opts...)...)
	require.NoError(t, err)
	require.NoError(t, up.WaitConnected(testkit.Ctx(t, 20*time.Second)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	relay := broker.NewServer(up.Registry(), broker.WithName("edge"))
	done := make(chan error, 1)
	go func() { done <- relay.Serve(ln) }()
	t.Cleanup(func() { relay.Close(); <-done; up.Close() })
	return ln.Addr().String()
}

// TestClassesTravelThroughARelay checks guide §12: "the class travels with
// the error, through relays too", for a classified application error that is
// not registered, and that a relay that cannot reach upstream gives its
// clients remote.ErrDisconnected (unavailable), naming the relay and not an
// address.
func TestClassesTravelThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	addr, _, stop := serveDesk(t, broker.WithName("origin"))
	edge := relayTo(t, addr, remote.WithBackoff(remote.Backoff{Initial: time.Minute, Max: time.Minute, Multiplier: 1}))
	cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", edge)
	require.NoError(t, err)
	defer cl.Close()
	desk, err := cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "desk")
	require.NoError(t, err)

	err = desk.Call(testkit.Ctx(t, 20*time.Second), "Classified", nil)
	require.Error(t, err)
	assert.Equal(t, broker.NotFound, broker.CodeOf(err), "%v", err)
	err = desk.Call(testkit.Ctx(t, 20*time.Second), "Registered", nil)
	assert.ErrorIs(t, err, errNoPen)
	assert.Equal(t, broker.ResourceExhausted, broker.CodeOf(err), "%v", err)
	err = desk.Call(testkit.Ctx(t, 20*time.Second), "Plain", nil)
	assert.Equal(t, broker.Unknown, broker.CodeOf(err), "%v", err)

	stop()
	require.Eventually(t, func() bool {
		err = desk.Call(testkit.Ctx(t, 20*time.Second), "Plain", nil)
		return errors.Is(err, remote.ErrDisconnected)
	}, 10*time.Second, 20*time.Millisecond, "last: %v", err)
	assert.Equal(t, broker.Unavailable, broker.CodeOf(err))
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "tether: disconnected: "), msg)
	assert.Equal(t, 1, strings.Count(msg, "tether:"), msg)
	assert.Contains(t, msg, `relay "edge"`)
	assert.Contains(t, msg, `"origin"`)
	assert.NotContains(t, msg, addr, "the relay's error names no address")
}

// TestWaitForLinkThroughARelayEndsAtTheDeadline checks guide §6: a call
// made with remote.WaitForLink is held by a relay whose link upstream is
// down until the caller's deadline (context.DeadlineExceeded), and a call
// made without it fails at once.
func TestWaitForLinkThroughARelayEndsAtTheDeadline(t *testing.T) {
	leakcheck.Check(t)
	addr, _, stop := serveDesk(t)
	edge := relayTo(t, addr, remote.WithBackoff(remote.Backoff{Initial: time.Minute, Max: time.Minute, Multiplier: 1}))
	cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", edge)
	require.NoError(t, err)
	defer cl.Close()
	desk, err := cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "desk")
	require.NoError(t, err)
	stop()
	require.Eventually(t, func() bool {
		return errors.Is(desk.Call(testkit.Ctx(t, 20*time.Second), "Plain", nil), remote.ErrDisconnected)
	}, 10*time.Second, 20*time.Millisecond)

	c, cancel := context.WithTimeout(testkit.Ctx(t, 20*time.Second), 300*time.Millisecond)
	defer cancel()
	err = desk.Call(remote.WaitForLink(c), "Plain", nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "%v", err)
	assert.NotErrorIs(t, err, remote.ErrDisconnected, "the relay did not hold the call: %v", err)
	assert.Equal(t, broker.DeadlineExceeded, broker.CodeOf(err))
}

// TestRefusedClientSurface checks guide §5 "A refusal is not an outage":
// state Refused, every call (WaitForLink too) and WaitConnected fail at
// once with the refusal, cl.Err() returns it, Stats counts Refusals and
// shows LastError, the Refused signal fires, and none of it matches
// remote.ErrDisconnected.
func TestRefusedClientSurface(t *testing.T) {
	leakcheck.Check(t)
	addr, _, _ := serveDesk(t, broker.WithToken("s3cret"))
	var mu sync.Mutex
	var signalled []error
	// The handler is connected before the first dial (WithWatch): the
	// refusal comes from that dial, and the next one waits for the
	// backoff's cap, so a handler connected after Connect may miss it.
	watch := remote.WithWatch(func(cl *remote.Client) {
		cl.Refused.Connect(func(err error) { mu.Lock(); signalled = append(signalled, err); mu.Unlock() })
	})
	cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", addr, remote.WithBroker(broker.WithToken("guess")), watch)
	require.NoError(t, err)
	defer cl.Close()

	err = cl.WaitConnected(testkit.Ctx(t, 20*time.Second)) // refused: at once, not at ctx's deadline
	require.ErrorIs(t, err, broker.ErrAuthFailed)
	assert.Equal(t, remote.Refused, cl.State())
	assert.ErrorIs(t, cl.Err(), broker.ErrAuthFailed)
	assert.NotErrorIs(t, cl.Err(), remote.ErrDisconnected)
	assert.Equal(t, broker.Unauthenticated, broker.CodeOf(cl.Err()))

	c, cancel := context.WithTimeout(testkit.Ctx(t, 20*time.Second), 15*time.Second)
	defer cancel()
	_, err = cl.Registry().Lookup(remote.WaitForLink(c), "desk")
	assert.ErrorIs(t, err, broker.ErrAuthFailed)
	assert.NotErrorIs(t, err, remote.ErrDisconnected)
	assert.NoError(t, c.Err(), "a call with WaitForLink waited for its deadline on a refused client")

	st := cl.Stats()
	assert.GreaterOrEqual(t, st.Refusals, int64(1))
	assert.Contains(t, st.LastError, "authentication failed")
	assert.Equal(t, "refused", st.State)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(signalled) > 0 }, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.ErrorIs(t, signalled[0], broker.ErrAuthFailed)
	mu.Unlock()
}
