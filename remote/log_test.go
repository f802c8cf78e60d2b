package remote

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
)

// logLine is one record of a JSON slog handler.
type logLine struct {
	Time   time.Time `json:"time"`
	Level  string    `json:"level"`
	Msg    string    `json:"msg"`
	Server string    `json:"server"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Err    string    `json:"err"`
	Ref    string    `json:"ref"`
	Fails  int       `json:"failed_attempts"`
}

// clientLogs is a logger writing JSON lines to a buffer the test reads.
type clientLogs struct {
	buf    logbuf.Buffer
	logger *slog.Logger
}

// newClientLogs returns a logger at debug level and its buffer.
func newClientLogs() *clientLogs {
	l := &clientLogs{}
	l.logger = slog.New(slog.NewJSONHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return l
}

// lines parses what was logged so far.
func (l *clientLogs) lines(t *testing.T) []logLine {
	t.Helper()
	var out []logLine
	for _, s := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if s == "" {
			continue
		}
		var ln logLine
		require.NoError(t, json.Unmarshal([]byte(s), &ln), s)
		out = append(out, ln)
	}
	return out
}

// with returns the lines whose message contains msg, at level (any level
// when empty).
func (l *clientLogs) with(t *testing.T, level, msg string) []logLine {
	var out []logLine
	for _, ln := range l.lines(t) {
		if strings.Contains(ln.Msg, msg) && (level == "" || ln.Level == level) {
			out = append(out, ln)
		}
	}
	return out
}

// wait waits (bounded) for a line with msg at level.
func (l *clientLogs) wait(t *testing.T, level, msg string) logLine {
	t.Helper()
	var got []logLine
	testkit.Eventually(t, level+" "+msg, func() bool {
		got = l.with(t, level, msg)
		return len(got) > 0
	})
	return got[0]
}

// order checks that the first lines with each message came in that order.
func (l *clientLogs) order(t *testing.T, msgs ...string) {
	t.Helper()
	lines, i := l.lines(t), 0
	for _, ln := range lines {
		if i < len(msgs) && strings.Contains(ln.Msg, msgs[i]) {
			i++
		}
	}
	require.Equal(t, len(msgs), i, "lines in order %q; logged:\n%s", msgs, l.buf.String())
}

// TestClientLogsAnOutage: a client with WithLogger logs its link through a
// real outage (the link black-holed and new connections refused by a
// faultnet proxy, then a new server without the manager behind it): connecting
// and connected at info, the lost link and the first failed attempt at
// warn, further failures at most one warning per backoff cap (debug
// otherwise), the reconnection with the count of failures, a *Ref that
// cannot be obtained again at warn once however often it is called, and
// its close. Its connections log to the same logger.
func TestClientLogsAnOutage(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	proxy := proxyTo(t, s.addr)
	logs := newClientLogs()
	// A cap of 1 s (800 ms at least, with its ±20% jitter) well above the
	// first delays (10, 16, 26 ms...): a loaded machine cannot make every
	// attempt of the outage's first second a warning.
	cl := connect(t, proxy.Addr(), WithLogger(logs.logger), WithBackoff(Backoff{Initial: 10 * time.Millisecond, Max: time.Second, Jitter: 0.2}), quickDeadPeer())
	ctx := testkit.Ctx(t, time.Minute)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	var got string
	require.NoError(t, users.Call(ctx, "Get", &got, "x"))
	up := logs.wait(t, "INFO", "client connected")
	assert.Equal(t, proxy.Addr(), up.Server)
	assert.Zero(t, up.Fails)

	proxy.Refuse(true)
	proxy.Blackhole(true) // the link goes silent: the keepalive finds it dead
	lost := logs.wait(t, "WARN", "client lost its link")
	assert.Equal(t, proxy.Addr(), lost.Server)
	assert.NotEmpty(t, lost.Err)
	for cl.Stats().DialFailures < 8 {
		require.True(t, cl.WaitForStateChange(ctx, cl.State()))
	}
	failed := logs.with(t, "", "client cannot connect")
	warned := logs.with(t, "WARN", "client cannot connect")
	require.GreaterOrEqual(t, len(failed), 8, "every failed attempt is logged")
	require.Less(t, len(warned), len(failed), "not every failed attempt is a warning")
	assert.Equal(t, 1, warned[0].Fails, "the outage's first failure is a warning")
	for i := 1; i < len(warned); i++ {
		assert.GreaterOrEqual(t, warned[i].Time.Sub(warned[i-1].Time), 800*time.Millisecond, "warnings %d and %d", i-1, i)
	}
	assert.NotEmpty(t, logs.with(t, "DEBUG", "client dialling again"))
	assert.NotEmpty(t, logs.with(t, "WARN", "no answer to keepalive pings"), "the client's connections log to its logger")

	// The server comes back without the manager: the link is back, the
	// reference cannot be obtained again.
	other := registry.New()
	require.NoError(t, other.Register("other", newUsers("b")))
	proxy.SetTarget(startServer(t, "127.0.0.1:0", other).addr)
	proxy.Restore()
	waitState(t, cl, Connected)
	back := logs.with(t, "INFO", "client connected")
	require.Len(t, back, 2)
	assert.GreaterOrEqual(t, back[1].Fails, 8, "the reconnection counts the failed attempts")
	for range 3 {
		require.ErrorIs(t, users.Call(ctx, "Get", &got, "x"), registry.ErrNotFound)
	}
	gone := logs.with(t, "WARN", "reference could not be obtained again")
	require.Len(t, gone, 1, "once per failure, not per call")
	assert.Equal(t, "tether.remote(users)", gone[0].Ref)
	assert.Contains(t, gone[0].Err, "users")

	require.NoError(t, cl.Close())
	logs.order(t, "client connecting", "client connected", "client lost its link", "client connecting",
		"client cannot connect", "client connected", "reference could not be obtained again", "client closed")
}

// TestClientLogsRefusals: a refused client warns of the refusal, with the
// server and the error, at most once per backoff cap, and its connections'
// own lines go to the logger WithBroker gives, which wins over the client's.
func TestClientLogsRefusals(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")), broker.WithToken("right"))
	logs, connLogs := newClientLogs(), newClientLogs()
	cl := connect(t, s.addr, WithLogger(logs.logger), WithBroker(broker.WithToken("wrong"), broker.WithLogger(connLogs.logger)))
	ctx := testkit.Ctx(t, time.Minute)
	refused := stamps(&cl.Refused)
	for len(refused()) < 3 {
		require.True(t, cl.WaitForStateChange(ctx, cl.State()))
	}
	warned := logs.with(t, "WARN", "the server refused this client")
	require.NotEmpty(t, warned)
	assert.Equal(t, s.addr, warned[0].Server)
	assert.Contains(t, warned[0].Err, "authentication failed")
	for i := 1; i < len(warned); i++ {
		assert.GreaterOrEqual(t, warned[i].Time.Sub(warned[i-1].Time), 160*time.Millisecond, "warnings %d and %d", i-1, i)
	}
	assert.Empty(t, logs.with(t, "", "client connected"))
	require.NoError(t, cl.Close())
	assert.Empty(t, connLogs.with(t, "", "client"), "the client's own lines go to its logger")
}

// TestBrokerLoggerTakesTheConnectionsLines: given both WithLogger and,
// through WithBroker, a broker.WithLogger, the client's own lines go to
// the first and its connections' lines (a dead peer, here) to the second.
func TestBrokerLoggerTakesTheConnectionsLines(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	proxy := proxyTo(t, s.addr)
	logs, connLogs := newClientLogs(), newClientLogs()
	connect(t, proxy.Addr(), WithLogger(logs.logger), WithBroker(broker.WithLogger(connLogs.logger)), quickDeadPeer())
	logs.wait(t, "INFO", "client connected")
	proxy.Blackhole(true)
	logs.wait(t, "WARN", "client lost its link")
	connLogs.wait(t, "WARN", "no answer to keepalive pings")
	assert.Empty(t, logs.with(t, "", "no answer to keepalive pings"))
	assert.Empty(t, connLogs.with(t, "", "client"))
	proxy.Restore()
}

// TestClientLogsAFailover: a ConnectAny client whose server drains logs
// the going-away notice and its move to the other server at info, and no
// warning.
func TestClientLogsAFailover(t *testing.T) {
	leakcheck.Check(t)
	a := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	b := startServer(t, "127.0.0.1:0", publish(t, newUsers("b")))
	logs := newClientLogs()
	ctx := testkit.Ctx(t, time.Minute)
	cl, err := ConnectAny(ctx, Static(Endpoint{Network: "tcp", Addr: a.addr}, Endpoint{Network: "tcp", Addr: b.addr}),
		append(fast(), WithLogger(logs.logger))...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	require.NoError(t, cl.WaitConnected(ctx))
	first, ok := cl.Endpoint()
	require.True(t, ok)
	from, to := a, b
	if first.Addr == b.addr {
		from, to = b, a
	}
	require.NoError(t, from.srv.Shutdown(ctx))
	moved := logs.wait(t, "INFO", "client failed over to another server")
	assert.Equal(t, from.addr, moved.From)
	assert.Equal(t, to.addr, moved.To)
	away := logs.with(t, "INFO", "server going away")
	require.Len(t, away, 1)
	assert.Equal(t, from.addr, away[0].Server)
	assert.Contains(t, away[0].Err, "shutting down")
	require.NoError(t, cl.Close())
	logs.order(t, "client connected", "server going away", "client connecting", "client failed over", "client connected")
	assert.Empty(t, logs.with(t, "WARN", ""), "a drain is no fault:\n%s", logs.buf.String())
}

// TestPoolLogsItsServers: a Pool logs at info the servers its resolver
// adds, moves (the same ID at a new address) and drops.
func TestPoolLogsItsServers(t *testing.T) {
	leakcheck.Check(t)
	a := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	b := startServer(t, "127.0.0.1:0", publish(t, newUsers("b")))
	logs := newClientLogs()
	ctx := testkit.Ctx(t, time.Minute)
	r := Static(Endpoint{Network: "tcp", Addr: a.addr, ID: "one"})
	p, err := ConnectAll(ctx, r, append(fast(), WithLogger(logs.logger))...)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	assert.Equal(t, a.addr+" (one)", logs.wait(t, "INFO", "pool adds a server").Server)
	r.Update(Endpoint{Network: "tcp", Addr: b.addr, ID: "one"})
	assert.Equal(t, b.addr+" (one)", logs.wait(t, "INFO", "pool's server moved").Server)
	r.Update(Endpoint{Network: "tcp", Addr: a.addr, ID: "two"})
	assert.Equal(t, b.addr+" (one)", logs.wait(t, "INFO", "pool drops a server").Server)
	testkit.Eventually(t, "two is added", func() bool { return len(logs.with(t, "INFO", "pool adds a server")) == 2 })
	assert.Equal(t, a.addr+" (two)", logs.with(t, "INFO", "pool adds a server")[1].Server)
	require.NoError(t, p.Close())
}
