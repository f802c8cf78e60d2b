package remote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestWithWatchSeesTheFirstLink: handlers connected in WithWatch run
// before the first dial, so the first link's Connected reaches them on
// every client, ConnectAny's and a pool's included; handlers connected
// after Connect returned can miss it on loopback.
func TestWithWatchSeesTheFirstLink(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	ctx := testkit.Ctx(t, time.Minute)

	cl, tr := connectWatched(t, s.addr)
	require.NoError(t, cl.WaitConnected(ctx))
	tr.reach(t, 1, 0)

	var anyTr *transitions
	anyCl, err := ConnectAny(ctx, Static(Endpoint{Network: "tcp", Addr: s.addr}),
		append(fast(), WithWatch(func(c *Client) { anyTr = watch(c) }))...)
	require.NoError(t, err)
	defer anyCl.Close()
	require.NoError(t, anyCl.WaitConnected(ctx))
	anyTr.reach(t, 1, 0)

	watched := make(chan *transitions, 4)
	pool, err := ConnectAll(ctx, Static(Endpoint{Network: "tcp", Addr: s.addr}),
		append(fast(), WithWatch(func(c *Client) { watched <- watch(c) }))...)
	require.NoError(t, err)
	defer pool.Close()
	poolTr := <-watched
	for _, c := range pool.Clients() {
		require.NoError(t, c.WaitConnected(ctx))
	}
	poolTr.reach(t, 1, 0)
}

// TestWithWatchNilIsRefused: a nil function is a mistake, reported by
// Connect rather than a panic on the client's first transition.
func TestWithWatchNilIsRefused(t *testing.T) {
	_, err := Connect(context.Background(), "tcp", "127.0.0.1:1", WithWatch(nil))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	assert.ErrorContains(t, err, "WithWatch(nil)")
}

// TestWithLoggerNilIsRefused: a nil logger is a mistake (leaving the option
// out is how a client stays silent), reported by Connect.
func TestWithLoggerNilIsRefused(t *testing.T) {
	_, err := Connect(context.Background(), "tcp", "127.0.0.1:1", WithLogger(nil))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	assert.ErrorContains(t, err, "WithLogger(nil)")
}
