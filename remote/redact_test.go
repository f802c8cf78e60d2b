package remote

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
	"github.com/tether-go/tether/internal/testkit"
)

// logBuffer is a buffer a logger or a running command writes while the
// test reads it.
type logBuffer = logbuf.Buffer

// assertRedacted checks that err, as a client behind the relay sees it,
// names the relay and gives away none of the addresses behind it.
func assertRedacted(t *testing.T, err error, addrs ...string) {
	t.Helper()
	require.Error(t, err)
	msg := err.Error()
	assert.Contains(t, msg, `relay "edge"`, "the message names the hop")
	for _, no := range []string{"127.0.0.1", "dial tcp", "connection refused", "connect:"} {
		assert.NotContains(t, msg, no)
	}
	for _, a := range addrs {
		_, port, _ := net.SplitHostPort(a)
		assert.NotContains(t, msg, port, "no port number")
	}
	var re *broker.RemoteError
	assert.True(t, errors.As(err, &re), "the relay sent it: %v", err)
	t.Logf("the client sees: %v", err)
}

// startEdge publishes up's registry as the relay "edge", logging at debug
// level into the returned buffer.
func startEdge(t *testing.T, up *Client) (*server, *logBuffer) {
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return startServer(t, "127.0.0.1:0", up.Registry(), broker.WithName("edge"), broker.WithLogger(logger)), logs
}

// TestRelayErrorsNameTheHopNotItsAddresses: a client behind a relay whose
// upstream never started sees, for lookups and calls alike, that the relay
// cannot reach its server, with the sentinel it can test for, and none of
// the addresses, ports or system texts behind the relay. The relay itself
// keeps the whole error, and logs what it withheld at debug level.
func TestRelayErrorsNameTheHopNotItsAddresses(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	upAddr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there
	up := connect(t, upAddr)
	waitState(t, up, Waiting)
	relay, logs := startEdge(t, up)
	cl := connect(t, relay.addr)

	_, err = cl.Registry().Lookup(ctx, "users")
	assertRedacted(t, err, upAddr, relay.addr)
	assert.ErrorIs(t, err, ErrDisconnected)
	assert.Contains(t, err.Error(), `cannot reach its server for "users"`, "says what is unreachable")

	conn, err := broker.Dial(ctx, "tcp", relay.addr)
	require.NoError(t, err)
	defer conn.Close()
	var names []string
	err = conn.Root().Call(ctx, "List", &names)
	assertRedacted(t, err, upAddr, relay.addr)
	assert.ErrorIs(t, err, ErrDisconnected)

	_, err = up.Registry().Lookup(ctx, "users")
	require.ErrorIs(t, err, ErrDisconnected)
	assert.Contains(t, err.Error(), upAddr, "in its own process the error keeps its detail")
	assert.Contains(t, logs.String(), upAddr, "the relay logs what it withheld")
	assert.Contains(t, logs.String(), "level=DEBUG")
}

// TestRelayErrorsAfterTheUpstreamStops: once the upstream has served and
// stopped, a call in flight fails with ErrConnectionLost, later calls and
// lookups with ErrDisconnected or ErrDeadReference: every one names the
// relay and the server it lost, by its announced name, and no address.
func TestRelayErrorsAfterTheUpstreamStops(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	u := newUsers("origin")
	origin := startServer(t, "127.0.0.1:0", publish(t, u), broker.WithName("origin"))
	up := connect(t, origin.addr)
	relay, _ := startEdge(t, up)
	cl := connect(t, relay.addr)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	got, err := broker.Call[string](ctx, users, "Get", "alice")
	require.NoError(t, err)
	require.Equal(t, "origin:alice", got)

	held := make(chan error, 1)
	go func() { _, err := broker.Call[int64](ctx, users, "Hold"); held <- err }()
	u.waitHolding(t, "Hold", held)
	origin.stop()
	err = <-held
	assertRedacted(t, err, origin.addr, relay.addr)
	assert.ErrorIs(t, err, broker.ErrConnectionLost)
	assert.Contains(t, err.Error(), `lost its connection to "origin" while "Hold" was in flight`, "names the hop, the server and the call")

	waitState(t, up, Waiting)
	_, err = broker.Call[string](ctx, users, "Get", "bob")
	assertRedacted(t, err, origin.addr, relay.addr)
	assert.True(t, errors.Is(err, ErrDisconnected) || errors.Is(err, broker.ErrDeadReference), "%v", err)
	assert.Contains(t, err.Error(), `server "origin"`)
	assert.Contains(t, err.Error(), `"Get"`, "names the call")

	_, err = cl.Registry().Lookup(ctx, "other")
	assertRedacted(t, err, origin.addr, relay.addr)
	assert.ErrorIs(t, err, ErrDisconnected)
	assert.True(t, strings.Contains(err.Error(), `cannot reach server "origin" for "other"`), "%v", err)
}
