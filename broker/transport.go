package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// yamuxConfig derives yamux's settings from the options: no keepalive of
// yamux's own (a goroutine per session, pinging busy links too: the
// connection's keepalive replaces it), pings and sends given half of the
// dead-peer timeout, and yamux's logging routed into the connection's
// slog.Logger.
func yamuxConfig(o *options) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{o.logger}
	cfg.EnableKeepAlive = false
	cfg.KeepAliveInterval = o.deadPeerTimeout / 2 // unused, but yamux checks it
	cfg.ConnectionWriteTimeout = o.deadPeerTimeout / 2
	cfg.StreamOpenTimeout = 0 // no goroutine per opened stream; the keepalive catches a dead peer
	// Streams not yet accepted are buffered by yamux, a window each. Before
	// the handshake nobody accepts them, and the read guard allows only the
	// main stream; after it, a peer needs the main stream and
	// maxPeerMsgStreams more.
	cfg.AcceptBacklog = maxPeerMsgStreams + 2
	cfg.StreamCloseTimeout = 30 * time.Second
	cfg.MaxStreamWindowSize = streamWindow
	return cfg
}

// streamWindow is the most a stream's receiver lets its peer send ahead of
// what it has read (yamux's MaxStreamWindowSize). Every stream starts with
// yamux's 256 KiB, and is granted the rest once its reader first reads:
// a stream nobody has accepted (before the handshake, say) never grows past
// 256 KiB. yamux's receiver sends a window update once its reader has
// consumed half the window: at 256 KiB, a flow of 64 KiB messages took one
// update per two messages and, whenever the writer got four messages ahead,
// split the fourth into two yamux frames and stalled it until the update
// came (docs/architecture.md, "Large values").
const streamWindow = 1 << 20

// maxStreamWrite is the most this side hands yamux in one Stream.Write
// (writeAll: a message stream's frames, the main stream's batches), which
// yamux sends as one frame, up to the window. It keeps yamux's frames at
// most 256 KiB, as the default window did: yamux's send loop copies each
// frame whole into a buffer that it keeps for the session's life, at the
// size of the largest frame it ever sent, and writes it while every other
// stream's frames wait.
const maxStreamWrite = 256 << 10

// yamuxLogger adapts slog to yamux's Printf-style logger, keeping the level
// yamux writes into its messages.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any)                 { y.log(fmt.Sprint(v...)) }
func (y yamuxLogger) Printf(format string, v ...any) { y.log(fmt.Sprintf(format, v...)) }
func (y yamuxLogger) Println(v ...any)               { y.log(fmt.Sprintln(v...)) }

func (y yamuxLogger) log(msg string) {
	level := slog.LevelDebug
	switch {
	case strings.Contains(msg, ErrProtocol.Error()):
		// A read error of the read guard's making: the guard, or the
		// handshake it ended, reports it at the level it deserves.
	case strings.Contains(msg, net.ErrClosed.Error()):
		// This side closed the connection (its teardown, or a dial given
		// up) while yamux's send loop was writing: no fault of the
		// peer's, and the connection reports its own cause. (A client
		// failing over after a drain logged "[ERR] yamux: Failed to
		// write header: ... use of closed network connection" as a
		// warning: TestClientLogsAFailover, once under load.)
	case strings.HasPrefix(msg, "[ERR]"):
		level = slog.LevelWarn
	case strings.HasPrefix(msg, "[WARN]"):
		level = slog.LevelInfo
	}
	if !y.l.Enabled(context.Background(), level) {
		return
	}
	y.l.Log(context.Background(), level, strings.TrimSpace(msg), "component", "yamux")
}

// coalescer is the net.Conn yamux runs over. On the way out it joins each
// yamux data frame's 12-byte header and its body into one write. yamux
// writes them separately; on loopback and LAN links the two write(2) calls
// cost as much as the rest of a small call. Only yamux's send loop writes to
// the connection, always a header and then, for a data frame with a length,
// exactly its body, so holding the header back until the body arrives is
// safe. On the way in, its readGuard bounds what the peer's frames may cost
// (see readGuard).
type coalescer struct {
	net.Conn
	hdr  [12]byte
	held bool
	buf  []byte // buf[:pend] is a corked frame, not written yet
	pend int
	arr  [2][]byte
	tcp  bool

	corked atomic.Uint32 // the message stream whose writer corked (see cork), or 0

	in readGuard

	writes, written atomic.Int64 // write calls and bytes to the connection
	reads, read     atomic.Int64 // read calls and bytes from it
	lastRead        atomic.Int64 // when bytes last arrived: monoNow's reading

	readErr atomic.Pointer[error] // the first error a read of the connection returned

	wakeMu sync.Mutex
	wake   *yamux.Stream // the stream a handshake reads: see wakeOnClose
}

// wakeOnClose has Close end at once a Read of st that waits for data; a
// handshake registers its stream while it reads the peer's first message,
// and nil once it is done (after which Close no longer touches it).
//
// A yamux Stream.Read waiting when its session shuts down does not block:
// it loops, making a timer per turn when a read deadline is set (as during
// a handshake), until the session's receive loop has exited and marked the
// stream closed. In a reconnect storm (1,000 clients redialling a server
// that turns most of them away over its handshake limits, on two cores)
// hundreds of such loops took the CPU the receive loops needed to exit,
// and a dial the server had turned away took seconds to fail. A read
// deadline in the past ends the loop.
func (c *coalescer) wakeOnClose(st *yamux.Stream) {
	c.wakeMu.Lock()
	c.wake = st
	c.wakeMu.Unlock()
}

// Close closes the connection. yamux calls it when its session shuts down,
// after marking the session closed and before waiting for its receive loop.
func (c *coalescer) Close() error {
	c.wakeMu.Lock()
	if c.wake != nil {
		c.wake.SetReadDeadline(time.Now())
		c.wake = nil
	}
	c.wakeMu.Unlock()
	return c.Conn.Close()
}

// monoEpoch is where monoNow counts from.
var monoEpoch = time.Now()

// monoNow reads the monotonic clock as a number, which an atomic can hold.
func monoNow() int64 { return int64(time.Since(monoEpoch)) }

// silence returns how long the connection has received nothing.
func (c *coalescer) silence() time.Duration {
	return time.Duration(monoNow() - c.lastRead.Load())
}

// Read reads from the connection for yamux's receive loop, its only reader.
// A peer that breaks one of readGuard's bounds gets an error that wraps
// ErrProtocol, from this read and every later one: yamux then ends the
// session.
func (c *coalescer) Read(p []byte) (int, error) {
	if c.in.err != nil {
		return 0, c.in.err
	}
	n, err := c.Conn.Read(p)
	c.reads.Add(1)
	c.read.Add(int64(n))
	if n > 0 {
		c.lastRead.Store(monoNow()) // the peer is alive: see keepalive
	}
	if err != nil && c.readErr.Load() == nil {
		// Kept for the handshake: yamux reports a failed read to its
		// streams as a closed session, and a TLS peer's alert refusing
		// our certificate arrives as one (TLS 1.3 clients learn of it on
		// their first read).
		kept := err // a copy: taking err's address would move it to the heap on every read
		c.readErr.Store(&kept)
	}
	if n > 0 {
		if gerr := c.in.scan(p[:n]); gerr != nil {
			// The bytes already passed to yamux were within bounds; these
			// are dropped.
			return 0, gerr
		}
	}
	return n, err
}

// yamux's frame types and flags (hashicorp/yamux const.go).
const (
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxTypePing         = 2
	yamuxFlagSYN          = 1
	yamuxHeaderSize       = 12
	writevThreshold       = 16 << 10
)

// newCoalescer wraps nc for a connection with options o. A server's
// connection starts before the handshake (see readGuard); call admit once
// the peer is let in.
func newCoalescer(nc net.Conn, o *options) *coalescer {
	_, tcp := nc.(*net.TCPConn)
	c := &coalescer{Conn: nc, tcp: tcp}
	c.in.init(nc, o)
	c.lastRead.Store(monoNow())
	return c
}

// lastReadErr returns the first error a read of the connection returned,
// or nil.
func (c *coalescer) lastReadErr() error {
	if p := c.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// admit lifts the limits that apply before the handshake. The server calls
// it before sending its Welcome, so that nothing the peer sends once it has
// the Welcome is counted against them.
func (c *coalescer) admit() { c.in.admitted.Store(true) }

// violation returns the error with which the guard ended the session, or
// nil.
func (c *coalescer) violation() error {
	if p := c.in.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Limits on the peer's yamux frames; see readGuard.
const (
	// preHandshakeSlack is what a peer may send before the handshake
	// beyond the largest Hello: yamux headers, the frame's length prefix,
	// pings, window updates.
	preHandshakeSlack = 4 << 10
	// pingInterval is the fastest a conforming peer pings: yamux sends a
	// keepalive every half of its dead-peer timeout, whose minimum is
	// minDeadPeerTimeout.
	pingInterval = minDeadPeerTimeout / 2
	// pingBurst is how many pings a peer may send faster than one per
	// pingInterval.
	pingBurst = 16
	// pingsBeforeHandshake is how many pings a peer may send at once
	// before the handshake; then one per pingInterval.
	pingsBeforeHandshake = 4
)

// readGuard follows the yamux frames a peer sends, header by header,
// across reads, and bounds what they may cost this side, where yamux itself
// does not:
//
//   - yamux answers every ping in a goroutine of its own, which waits for
//     room in the send queue: a peer that floods pings and does not read
//     grew a server by hundreds of thousands of goroutines. Pings are
//     rate-limited: a token bucket of pingBurst, refilled one per
//     pingInterval, enough for yamux keepalives at the minimum dead-peer
//     timeout.
//   - yamux buffers data on streams nobody has accepted yet, a window
//     (256 KiB) each; before the handshake nobody does. On the accepting
//     side, until admit, a peer may open one stream (the main stream) and
//     send handshakeMax+preHandshakeSlack bytes in all, and start with
//     pingsBeforeHandshake pings.
//
// The dialing side is admitted from the start: its peer is the server it
// chose, and may open streams as soon as its Welcome is out, which the
// dialer cannot tell apart from before. Only yamux's receive loop calls
// scan; admitted and failed are read by others.
type readGuard struct {
	hdr    [yamuxHeaderSize]byte
	hdrN   int    // bytes of the current header seen so far
	body   uint32 // bytes of the current data frame's body still to come
	open   bool   // admitted was seen: the receive loop's copy of it
	left   int    // bytes the peer may still send before the handshake
	opened int    // streams the peer opened before the handshake

	tokens   float64   // pings the peer may send now
	refilled time.Time // when tokens was last brought up to date

	err    error                 // the receive loop's copy of failed
	failed atomic.Pointer[error] // the violation that ended the session
	pings  atomic.Int64          // ping requests the peer sent, for tests

	admitted atomic.Bool
	logger   *slog.Logger
	remote   net.Addr

	// streams hears of every stream the peer opens once admitted (the
	// connection's acceptor).
	streams acceptor
}

func (g *readGuard) init(nc net.Conn, o *options) {
	g.logger, g.remote = o.logger, nc.RemoteAddr()
	g.left = handshakeMax + preHandshakeSlack
	g.tokens = pingBurst
	if o.side == serverSide {
		g.tokens = pingsBeforeHandshake
	} else {
		g.admitted.Store(true)
	}
	g.refilled = time.Now()
}

// scan follows the frames in p, the next bytes from the peer, and returns
// a violation of the guard's bounds.
func (g *readGuard) scan(p []byte) error {
	if !g.open {
		if g.open = g.admitted.Load(); !g.open {
			if g.left -= len(p); g.left < 0 {
				return g.fail(fmt.Errorf("%w: more than %d bytes before the handshake", ErrProtocol, handshakeMax+preHandshakeSlack))
			}
		}
	}
	for len(p) > 0 {
		if g.body > 0 {
			k := len(p)
			if uint64(k) > uint64(g.body) {
				k = int(g.body)
			}
			g.body -= uint32(k)
			p = p[k:]
			continue
		}
		var h []byte
		if g.hdrN == 0 && len(p) >= yamuxHeaderSize {
			h, p = p[:yamuxHeaderSize], p[yamuxHeaderSize:]
		} else {
			k := copy(g.hdr[g.hdrN:], p)
			g.hdrN += k
			p = p[k:]
			if g.hdrN < yamuxHeaderSize {
				return nil
			}
			g.hdrN = 0
			h = g.hdr[:]
		}
		if err := g.frame(h); err != nil {
			return err
		}
	}
	return nil
}

// frame checks one frame header. Frames yamux would refuse (a bad version
// or type) are left to yamux.
func (g *readGuard) frame(h []byte) error {
	syn := binary.BigEndian.Uint16(h[2:4])&yamuxFlagSYN != 0
	switch h[1] {
	case yamuxTypeData:
		g.body = binary.BigEndian.Uint32(h[8:12])
		fallthrough
	case yamuxTypeWindowUpdate:
		switch {
		case syn && g.open:
			g.streams.opened()
		case syn:
			if g.opened++; g.opened > 1 {
				return g.fail(fmt.Errorf("%w: a second stream before the handshake", ErrProtocol))
			}
		}
	case yamuxTypePing:
		if syn {
			return g.ping()
		}
	}
	return nil
}

// ping takes a token for a ping request. Pings are rare: the clock is read
// for them only.
func (g *readGuard) ping() error {
	g.pings.Add(1)
	now := time.Now()
	g.tokens = min(pingBurst, g.tokens+float64(now.Sub(g.refilled))/float64(pingInterval))
	g.refilled = now
	if g.tokens < 1 {
		return g.fail(fmt.Errorf("%w: pings more often than one per %v", ErrProtocol, pingInterval))
	}
	g.tokens--
	return nil
}

// fail records err as the violation that ends the session.
func (g *readGuard) fail(err error) error {
	g.err = err
	g.failed.Store(&err)
	if g.open {
		g.logger.Warn("tether: closing connection", "remote", g.remote, "err", err)
	}
	return err
}

// Write takes yamux's writes: a data frame's header is held until its
// body arrives, and the two go out in one write (or one writev, for a
// large body), after a corked frame if one waits.
func (c *coalescer) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		if c.holdBody(p) {
			return len(p), nil
		}
		if err := c.writeFrame(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == len(c.hdr) && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	if c.pend > 0 {
		// A frame without a body (a window update, a ping) joins the corked one.
		c.buf = append(c.buf[:c.pend], p...)
		if err := c.flush(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.writes.Add(1)
	c.written.Add(int64(len(p)))
	return c.Conn.Write(p)
}

// writeFrame writes what is corked, the held header and its body p in one
// system call.
func (c *coalescer) writeFrame(p []byte) error {
	c.buf = append(c.buf[:c.pend], c.hdr[:]...)
	c.pend = 0
	c.writes.Add(1)
	c.written.Add(int64(len(c.buf) + len(p)))
	var err error
	if len(p) > writevThreshold && c.tcp {
		c.arr = [2][]byte{c.buf, p}
		bufs := net.Buffers(c.arr[:])
		_, err = bufs.WriteTo(c.Conn) // one writev
		c.arr = [2][]byte{}
	} else {
		c.buf = append(c.buf, p...)
		_, err = c.Conn.Write(c.buf)
	}
	if cap(c.buf) > 4*writevThreshold {
		c.buf = nil
	}
	return err
}

// corkMax is the largest body a corked frame may have: the head of a
// message before its first segment (encoder.writeFrame).
const corkMax = 4 << 10

// holdBody keeps a small data frame back (the held header and body p)
// when it is the first on the stream whose writer corked the connection
// (the piece before a segment), so that it leaves with the next frame, the
// segment's first, in one writev. Holding it takes the cork: the segment's
// own frames, its small last one included, are never held, since nothing
// might follow them. Only one frame is ever held, and the next write,
// whatever it is, sends it. The next write comes: yamux's receiver
// grants more window once its reader has consumed half of it, so a
// segment waiting for window gets it while the piece (far less than half
// a window) is held back.
func (c *coalescer) holdBody(p []byte) bool {
	id := c.corked.Load()
	if id == 0 || c.pend > 0 || len(p) > corkMax || id != binary.BigEndian.Uint32(c.hdr[4:8]) {
		return false
	}
	if !c.corked.CompareAndSwap(id, 0) {
		return false // the writer uncorked meanwhile
	}
	c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
	c.pend = len(c.buf)
	return true
}

// flush writes buf, which holds a corked frame and what joined it.
func (c *coalescer) flush() error {
	c.pend = 0
	c.writes.Add(1)
	c.written.Add(int64(len(c.buf)))
	_, err := c.Conn.Write(c.buf)
	return err
}

// cork tells the coalescer that the writer of message stream id is about
// to write a small piece of a message and then a segment
// (encoder.writeFrame): the piece may wait for the segment, so that the two
// cost one system call and wake the peer once. One stream at a time may be
// corked; false means another is, and this piece goes out on its own. A
// cork holds one frame at most (holdBody), which waits only for the next
// write to the connection: the segment's, unless another frame comes
// first; a segment whose write fails ends the connection
// (Conn.writeFailed), so no piece waits for ever on a live one. Only TCP
// connections cork: the others could not writev.
func (c *coalescer) cork(id uint32) bool { return c.tcp && c.corked.CompareAndSwap(0, id) }

// uncork ends the cork of stream id, if holdBody has not taken it: the
// segment's write has sent whatever was held.
func (c *coalescer) uncork(id uint32) { c.corked.CompareAndSwap(id, 0) }
