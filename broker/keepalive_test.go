package broker

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// pingsReceived returns the ping requests c's peer has sent it.
func pingsReceived(c *Conn) int64 { return c.co.in.pings.Load() }

// TestKeepaliveBusyLinkSendsNoPings: a link that carries a call every few
// milliseconds for three dead-peer timeouts sends no keepalive ping either
// way: the traffic shows the peer alive.
func TestKeepaliveBusyLinkSendsNoPings(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second // a call every 10 ms leaves no silence of timeout/2, even under load
	srv, addr := startServer(t, newService(), WithDeadPeerTimeout(timeout))
	cl := dial(t, addr, WithDeadPeerTimeout(timeout))
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	for end := time.Now().Add(5 * timeout / 2); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		require.NoError(t, cl.Root().Call(ctx, "Nothing", nil))
	}
	assert.Zero(t, pingsReceived(sc), "the dialer pinged a busy link")
	assert.Zero(t, pingsReceived(cl), "the server pinged a busy link")
	assert.Zero(t, cl.keep.sent.Load()+sc.keep.sent.Load())
}

// TestKeepaliveIdleLinkPingedByDialerOnly: on an idle link the dialer
// pings, every half of the dead-peer timeout, and its pings keep the
// acceptor from pinging too; the link stays up.
func TestKeepaliveIdleLinkPingedByDialerOnly(t *testing.T) {
	leakcheck.Check(t)
	// The acceptor would ping if the dialer's timer ran timeout/4 late: 500
	// ms, which a loaded machine does not reach.
	const timeout = 2 * time.Second
	srv, addr := startServer(t, newService(), WithDeadPeerTimeout(timeout))
	cl := dial(t, addr, WithDeadPeerTimeout(timeout))
	sc := serverConn(t, srv)
	time.Sleep(timeout * 5 / 2)
	assert.GreaterOrEqual(t, pingsReceived(sc), int64(2), "the dialer pings an idle link")
	assert.Zero(t, pingsReceived(cl), "the acceptor pinged although the dialer did")
	assert.Nil(t, cl.Err())
	assert.Nil(t, sc.Err())
}

// TestKeepaliveFindsBlackHole: a black-holed link (sockets open, bytes
// vanish) ends on both sides once nothing was heard for the dead-peer
// timeout, with an error that says so. The detection times are logged; the
// bound checked is loose (a loaded machine runs timers late), what it
// catches is a keepalive that never fires.
func TestKeepaliveFindsBlackHole(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second
	srv, addr := startServer(t, newService(), WithDeadPeerTimeout(timeout))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.Addr(), WithDeadPeerTimeout(timeout))
	sc := serverConn(t, srv)
	require.NoError(t, cl.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
	proxy.Blackhole(true)
	start := time.Now()
	for _, side := range []struct {
		name string
		c    *Conn
	}{{"dialer", cl}, {"acceptor", sc}} {
		select {
		case <-side.c.Closed():
		case <-time.After(3 * timeout):
			t.Fatalf("the %s did not find the black hole within 3 × the dead-peer timeout", side.name)
		}
		t.Logf("the %s found the black hole after %v (dead-peer timeout %v)", side.name, time.Since(start), timeout)
		assert.ErrorIs(t, side.c.Err(), yamux.ErrKeepAliveTimeout)
		assert.ErrorContains(t, side.c.Err(), "heard nothing for")
	}
}

// TestKeepaliveLostPingAnswerEndsLink: a ping whose answer never comes ends
// the connection even though other bytes arrive afterwards. A black hole
// that swallows the dialer's ping and lifts before the dead-peer timeout
// lets the acceptor's own ping through, so neither side stays silent for
// that long; but bytes were lost (over a stream transport, frames such as
// a window update or a pushed result that nothing resends), and a link
// kept up after that can stall forever while it looks alive. (TCP never
// loses bytes that way; faultnet's Lossy mode does, as yamux's keepalive
// assumed a broken link might.)
func TestKeepaliveLostPingAnswerEndsLink(t *testing.T) {
	leakcheck.Check(t)
	// The dialer pings after T/2 of silence, the acceptor after 3T/4: the
	// black hole lifts halfway between, so the dialer's ping is lost and
	// the acceptor's arrives (a timer may run up to T/8 late).
	const timeout = 2 * time.Second
	srv, addr := startServer(t, newService(), WithDeadPeerTimeout(timeout))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	proxy.Lossy(true) // the link goes on after the black hole, with its gap
	cl := dial(t, proxy.Addr(), WithDeadPeerTimeout(timeout))
	sc := serverConn(t, srv)
	require.NoError(t, cl.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
	proxy.Blackhole(true)
	time.Sleep(timeout * 5 / 8)
	proxy.Blackhole(false)
	select {
	case <-cl.Closed():
	case <-time.After(3 * timeout):
		t.Fatalf("the dialer kept a link that lost its ping's answer (pings sent: dialer %d, acceptor %d)",
			cl.keep.sent.Load(), sc.keep.sent.Load())
	}
	assert.ErrorIs(t, cl.Err(), yamux.ErrKeepAliveTimeout)
	assert.ErrorContains(t, cl.Err(), "no answer to a keepalive ping")
}

// TestIdleConnGoroutines: an idle connection runs three goroutines on each
// side (yamux's two loops and the reader): no keepalive goroutine, no
// sender loop, no acceptor of message streams, no monitor.
func TestIdleConnGoroutines(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	before := runtime.NumGoroutine()
	dial(t, addr)
	serverConn(t, srv)
	// The server's handshake goroutine returns just after the dialer is in.
	var n int
	deadline := time.Now().Add(5 * time.Second)
	for n = runtime.NumGoroutine() - before; n > 6 && time.Now().Before(deadline); n = runtime.NumGoroutine() - before {
		time.Sleep(50 * time.Millisecond)
	}
	assert.LessOrEqual(t, n, 6, "goroutines of one idle connection, both sides")
}

// TestAcceptorComesAndGoes: the goroutine that accepts the peer's message
// streams runs only while streams wait: large messages both ways open
// message streams, every one is accepted (the calls complete), and the
// connection is back to its idle goroutines afterwards.
func TestAcceptorComesAndGoes(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	big := make([]byte, 100<<10)
	for range 3 {
		var out []byte
		require.NoError(t, cl.Root().Call(ctx, "Echo", &out, big))
		require.Len(t, out, len(big))
	}
	// Message streams stay open, each with its reader; the handler's
	// worker lingers for workerIdle. The acceptors are gone.
	testkit.Eventually(t, "the acceptors exit", func() bool {
		buf := make([]byte, 1<<20)
		return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("acceptStreams"))
	})
}

// TestKeepaliveAligned: an idle link's timer is rounded up to the next
// multiple of T/16 of the shared clock, never earlier than asked and less
// than T/16 later, so that idle connections fire together.
func TestKeepaliveAligned(t *testing.T) {
	k := &keepalive{timeout: 16 * time.Second, now: monoNow}
	for _, d := range []time.Duration{0, time.Nanosecond, 7500 * time.Millisecond, time.Second, 11 * time.Second} {
		before := monoNow()
		got := k.aligned(d)
		after := monoNow()
		assert.GreaterOrEqual(t, int64(got), int64(d)-(after-before), "aligned(%v) fires early", d)
		assert.Less(t, int64(got), int64(d+time.Second), "aligned(%v) fires a whole grid step late", d)
		// The moment it fires is on the grid, measured from either clock
		// reading around the call.
		at := before + int64(got)
		assert.True(t, at%int64(time.Second) == 0 || (after+int64(got))%int64(time.Second) <= after-before,
			"aligned(%v) = %v ends off the 1 s grid", d, got)
	}
}

// handKeepalive returns a dialer's keepalive of timeout T on a test clock
// (clock, in monoNow's unit) whose timer never fires, so that the test
// calls check by hand; co is what it reads the silence from, and *died is
// the error it ended the link with, if it did.
func handKeepalive(t *testing.T, T time.Duration) (k *keepalive, co *coalescer, clock *atomic.Int64, died *error) {
	clock = new(atomic.Int64)
	clock.Store(int64(time.Hour))
	co = &coalescer{}
	co.lastRead.Store(clock.Load())
	died = new(error)
	k = newKeepalive(co, nil, T, true, func(err error) { *died = err }, nil)
	k.now = clock.Load
	k.timer = time.AfterFunc(time.Hour, func() {}) // never fires
	t.Cleanup(func() { k.timer.Stop() })
	return k, co, clock, died
}

// TestKeepaliveExcusesOwnStall drives the keepalive's check by a test clock
// through a stall of this process (the remote tests' lasting clients lost
// healthy links to "heard nothing for 605ms" with a 400 ms timeout when
// the test process was stopped for 600 ms: the timer ran before the
// reader had read what the peer sent meanwhile). A late firing pings
// instead of ending the link; a second stall with nothing heard after the
// first is not excused, so a dead peer is still found.
func TestKeepaliveExcusesOwnStall(t *testing.T) {
	const T = 400 * time.Millisecond
	k, co, clock, died := handKeepalive(t, T)
	k.due = clock.Load() + int64(T/2)
	// answered stands for the ping check asked for: its answer arrives,
	// read as bytes, at the clock's time.
	answered := func() {
		k.mu.Lock()
		k.pinging = false
		k.mu.Unlock()
		k.pings.Done()
		co.lastRead.Store(clock.Load())
	}

	// The timer, due at T/2, fires after a stall of 3T.
	clock.Add(int64(T/2 + 3*T))
	require.True(t, k.check(), "a firing late after a stall pings")
	require.NoError(t, *died, "a stall of this process ended the link")
	clock.Add(int64(T / 16))
	answered()
	clock.Add(int64(T / 4))
	assert.False(t, k.check())
	require.NoError(t, *died)

	// Stalled again, heard from since: excused again.
	clock.Add(int64(3 * T))
	require.True(t, k.check(), "a second stall, after the peer answered the first ping, is excused too")
	require.NoError(t, *died)

	// The ping goes unanswered (the peer is dead), and the process stalls
	// once more: not excused, the link ends.
	clock.Add(int64(3 * T))
	assert.False(t, k.check())
	require.ErrorIs(t, *died, yamux.ErrKeepAliveTimeout)
	assert.ErrorContains(t, *died, "heard nothing for")
	k.pings.Done() // the second ping's goroutine, which stop would wait for
}

// TestKeepaliveOnTimeFindsDeadPeer: without a stall (every firing on time)
// a silent peer is found dead at T, excuse or not.
func TestKeepaliveOnTimeFindsDeadPeer(t *testing.T) {
	const T = 400 * time.Millisecond
	k, _, clock, died := handKeepalive(t, T)
	k.due = clock.Load() + int64(T/2)
	clock.Add(int64(T / 2))
	require.True(t, k.check(), "pings at T/2")
	require.Equal(t, k.due, clock.Load()+int64(T/2), "armed for the link's end")
	clock.Add(int64(T / 2))
	assert.False(t, k.check())
	require.ErrorIs(t, *died, yamux.ErrKeepAliveTimeout)
	k.pings.Done()
}
