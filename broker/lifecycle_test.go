package broker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestSilentlyDeadPeerIsDetected black-holes the link (sockets stay open,
// bytes vanish) and checks that both ends notice within the configured
// dead-peer timeout, and that a call in flight fails rather than hangs.
func TestSilentlyDeadPeerIsDetected(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc, WithDeadPeerTimeout(time.Second))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.Addr(), WithDeadPeerTimeout(time.Second))
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, cl.Root().Call(ctx, "Nothing", nil))
	sc := serverConn(t, srv)

	inflight := make(chan error, 1)
	go func() { _, err := Call[string](ctx, cl.Root(), "Block"); inflight <- err }()
	<-svc.started
	proxy.Blackhole(true)
	start := time.Now()

	select {
	case <-cl.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the client never noticed the dead link")
	}
	detected := time.Since(start)
	t.Logf("client detected the black hole after %v (dead-peer timeout 1s)", detected)
	assert.ErrorContains(t, cl.Err(), "keepalive")
	err = <-inflight
	assert.ErrorIs(t, err, ErrConnectionLost)
	select {
	case <-sc.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("the server never noticed the dead link")
	}
	close(svc.release)
}

func TestDisconnectedFiresOnceAndCloseIsIdempotent(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	sc := serverConn(t, srv)
	var mu sync.Mutex
	var client, server []error
	cl.Disconnected.Connect(func(err error) { mu.Lock(); client = append(client, err); mu.Unlock() })
	sc.Disconnected.Connect(func(err error) {
		mu.Lock()
		server = append(server, err)
		mu.Unlock()
		sc.Close() // closing from a slot is allowed
	})
	assert.Nil(t, cl.Err())
	require.NoError(t, cl.Close())
	require.NoError(t, cl.Close())
	<-cl.Done()
	<-sc.Done()
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, client, 1)
	assert.ErrorIs(t, client[0], ErrClosed)
	require.Len(t, server, 1)
	assert.ErrorIs(t, server[0], ErrPeerClosed)
	assert.ErrorIs(t, cl.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil), ErrClosed)
}

func TestServerCloseWaitsForHandlers(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv := NewServer(svc)
	ln := listen(t)
	go srv.Serve(ln)
	cl, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", ln.Addr().String())
	require.NoError(t, err)
	go cl.Root().Call(context.Background(), "Wait", nil)
	<-svc.started
	require.NoError(t, srv.Close())
	// Close returned only after the handler saw its context end.
	select {
	case <-svc.sawDone:
	default:
		t.Fatal("Close returned while a handler was still running")
	}
	<-cl.Done()
	assert.ErrorIs(t, srv.Serve(ln), ErrServerClosed)
}

func TestNothingOnStderrLogsGoToSlog(t *testing.T) {
	leakcheck.Check(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	old := os.Stderr
	os.Stderr = w
	t.Cleanup(func() { os.Stderr = old })

	var logged bytes.Buffer
	var lmu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logged}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, addr := startServer(t, newService(), WithLogger(logger))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	quiet := dial(t, proxy.Addr(), WithDeadPeerTimeout(400*time.Millisecond)) // default logger: silence
	loud := dial(t, proxy.Addr(), WithDeadPeerTimeout(400*time.Millisecond), WithLogger(logger))
	require.NoError(t, quiet.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
	require.NoError(t, loud.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
	proxy.Blackhole(true) // the keepalive logs the dead peer
	<-quiet.Done()
	<-loud.Done()
	proxy.Close()
	// yamux's own keepalive, which logged the dead peer too, is gone; a
	// yamux header of an unknown version makes the server's yamux log.
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, err = raw.Write([]byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	testkit.Eventually(t, "yamux's log line in slog", func() bool {
		lmu.Lock()
		defer lmu.Unlock()
		return strings.Contains(logged.String(), "component=yamux")
	})
	raw.Close()

	os.Stderr = old
	w.Close()
	stderr, _ := io.ReadAll(r)
	assert.Empty(t, string(stderr), "nothing may reach stderr")
	lmu.Lock()
	assert.Contains(t, logged.String(), "no answer to keepalive pings")
	lmu.Unlock()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestInvalidOptions(t *testing.T) {
	_, err := Dial(context.Background(), "tcp", "127.0.0.1:1", WithDeadPeerTimeout(time.Millisecond))
	assert.ErrorContains(t, err, "below the minimum")
	_, err = Dial(context.Background(), "tcp", "127.0.0.1:1", WithMaxConcurrentCalls(-1))
	assert.ErrorContains(t, err, "negative")
	srv := NewServer(newService(), WithMaxMessageSize(10))
	assert.ErrorContains(t, srv.Serve(listen(t)), "below the minimum, 1 KiB")
}

// TestDefaultDeadPeerDetectionWithin15s checks the arithmetic behind the
// default: yamux's own keepalive is off; the connection's pings the peer
// after half of the timeout's silence (the dialer) or three quarters (the
// acceptor), and fails it once the silence reaches the whole timeout, so a
// peer that dies just after it was last heard is found after 15 s.
func TestDefaultDeadPeerDetectionWithin15s(t *testing.T) {
	o, err := buildOptions(dialSide, nil)
	require.NoError(t, err)
	cfg := yamuxConfig(o)
	assert.False(t, cfg.EnableKeepAlive, "no goroutine of yamux's per session")
	assert.Nil(t, cfg.LogOutput, "yamux never writes to stderr")
	pingAt := map[bool]time.Duration{}
	for _, dialer := range []bool{true, false} {
		k := startKeepalive(&coalescer{}, nil, o.deadPeerTimeout, dialer, func(error) { t.Error("a peer found dead at once") }, nil)
		k.stop()
		assert.Equal(t, 15*time.Second, k.timeout)
		pingAt[dialer] = k.pingAt
	}
	assert.Equal(t, 7500*time.Millisecond, pingAt[true], "the dialer pings after half the timeout")
	assert.Greater(t, pingAt[false], pingAt[true], "the dialer's pings keep the acceptor from pinging")
	assert.Less(t, pingAt[false], 15*time.Second, "the acceptor pings before it judges the peer dead")
	assert.GreaterOrEqual(t, cfg.ConnectionWriteTimeout, 15*time.Second-pingAt[true], "yamux's Ping waits for the answer as long as it may come")
}

// TestServeAfterCloseClosesItsListener: a server closed before its Serve
// ran (go srv.Serve(ln) racing srv.Close) returned ErrServerClosed but left
// ln open, so the kernel kept accepting connections nobody answered and a
// dialer hung until its handshake timeout instead of being refused.
func TestServeAfterCloseClosesItsListener(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := NewServer(newService())
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, srv.Serve(ln), ErrServerClosed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Dial(ctx, "tcp", ln.Addr().String(), WithHandshakeTimeout(5*time.Second))
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "the dialer waited out its timeout: %v", err)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
}
