package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// This file holds a connection's lifecycle: its construction, its
// goroutines (the reader, the acceptor of message streams) and its teardown. The tables it holds live beside it: outgoing.go
// (this side's calls), incoming.go (the peer's calls), exports.go and
// imports.go (references), msgstream.go (the message streams), stats.go.

const (
	// defaultMsgStreamThreshold is the frame size above which a message goes
	// on a message stream, off the main stream, so that it cannot hold up
	// small calls.
	defaultMsgStreamThreshold = 32 << 10
	// maxMsgStreams is how many message streams this side opens at most;
	// large messages take turns on them.
	maxMsgStreams = 4
	// maxPeerMsgStreams is how many message streams the peer may open.
	maxPeerMsgStreams = 16
	// readBufferSize is the main stream's read buffer: frames up to this
	// size are decoded in place.
	readBufferSize = 64 << 10
)

// ErrPeerClosed reports a connection that the peer closed.
var ErrPeerClosed = errors.New("tether: connection closed by peer")

func init() {
	remoteable.RegisterError("tether.protocol-violation", ErrProtocol)
	remoteable.RegisterError("tether.auth-failed", ErrAuthFailed)
	remoteable.RegisterError("tether.version-mismatch", ErrVersionMismatch)
	remoteable.RegisterError("tether.closed", ErrClosed)
}

// Conn is one Tether connection: a yamux session over a net.Conn on which
// both sides export objects and call each other's. Create one with Dial or
// NewConn (the dialing side) or receive one from a Server.
//
// A Conn is safe for concurrent use. It ends when either side closes it, when
// the peer stops answering keepalives, or when the peer breaks the protocol;
// then every pending call fails at once, every reference on it fails with
// ErrDeadReference, Disconnected is emitted and Done is closed.
type Conn struct {
	// Disconnected is emitted once, with the cause, when the connection
	// ends. Slots run after the connection's own goroutines have stopped
	// and before Done is closed; a slot must not wait on Done.
	Disconnected signals.Signal[error]

	opts      *options
	co        *coalescer
	sess      *yamux.Session
	main      *yamux.Stream
	fr        *cborx.FrameReader
	out       *sender
	keep      *keepalive
	peer      remoteable.Peer
	peerValue any // peer boxed once, for callCtx.Value
	// perPeerRoot marks a server's connection whose root a realm chose for
	// this peer: what it reaches is not lent to parties the peer calls for.
	perPeerRoot bool
	// hopID is this process's own random token for the connection, which
	// forwarded-for entries carry as their hop (see actingFor). Unlike
	// peer.ID, which the acceptor chooses, no peer can choose or forge it.
	hopID   string
	peerMax int // the largest message the peer accepts
	root    *Ref
	onDone  func()
	srv     *Server // the server that accepted the connection, or nil for a dialed one
	// issuer is what feed tokens issued on this connection are valid
	// for (internal/captable): its server's number, or 0 for a dialed
	// connection, which gets one of its own when it first needs it.
	issuer    uint64
	issuerKey string // issuer, and the peer's verified identity
	issuerM   sync.Once

	pending  pendingCalls // this side's calls waiting for results (outgoing.go)
	running  runningCalls // the peer's calls this side runs (incoming.go)
	refs     refTables    // exports and imports (exports.go, imports.go)
	streams  msgStreams   // the message streams (msgstream.go)
	work     chan *inCall // hands calls to idle handler goroutines
	callsOut atomic.Int64 // this side's calls waiting for results
	callsIn  atomic.Int64 // handlers running for the peer

	// The drain (drain.go): away is closed when the peer says it is
	// going away, and awaySaid set before this side answers the notice
	// (peerGoingAway); draining is set when this side does, after which the
	// peer's new calls are refused; answering counts the peer's calls
	// started and not yet answered, and quiet wakes Server.Shutdown when
	// it drops to zero while draining.
	away      chan struct{}
	awayOnce  sync.Once
	awaySaid  atomic.Bool
	draining  atomic.Bool
	answering atomic.Int64
	quiet     chan struct{}

	failOnce  sync.Once
	dying     chan struct{}
	cause     error
	loops     sync.WaitGroup
	handlers  sync.WaitGroup
	loopsDone chan struct{}
	done      chan struct{}
}

// newConn builds a connection whose handshake is complete; start runs it.
func newConn(o *options, co *coalescer, sess *yamux.Session, main *yamux.Stream, fr *cborx.FrameReader, peer remoteable.Peer, peerMax int, localRoot any) *Conn {
	c := &Conn{
		hopID: newHopID(),
		opts:  o, co: co, sess: sess, main: main, fr: fr,
		peer: peer, peerValue: peer, peerMax: peerMax,
		pending:   pendingCalls{calls: map[uint64]*call{}},
		running:   runningCalls{calls: map[uint64]*callCtx{}, earlyCancel: map[uint64]time.Time{}},
		refs:      newRefTables(),
		streams:   msgStreams{idle: make(chan *yamux.Stream, maxMsgStreams)},
		work:      make(chan *inCall),
		away:      make(chan struct{}),
		quiet:     make(chan struct{}, 1),
		dying:     make(chan struct{}),
		loopsDone: make(chan struct{}),
		done:      make(chan struct{}),
	}
	c.root = &Ref{c: c, id: 0}
	if localRoot != nil {
		c.refs.exportRoot(localRoot)
	}
	c.out = newSender(main, o.writeTimeout, c.writeFailed)
	c.out.peer, c.out.addr = peer.Name, addrString(peer.Addr)
	return c
}

// start runs the connection's one lasting goroutine, the reader, and its
// keepalive timer. The sender starts a goroutine only while it has frames
// to write, the acceptor only while streams the peer opened wait, and fail
// starts the teardown.
func (c *Conn) start() *Conn {
	// The keepalive first: once a loop runs, it may fail the connection,
	// and the teardown stops the keepalive.
	c.keep = startKeepalive(c.co, c.sess, c.opts.deadPeerTimeout, c.opts.side == dialSide, c.deadPeer, c.shrinkStreams)
	c.loops.Add(1)
	go c.readLoop()
	c.co.in.streams.begin(c.startAccepting)
	return c
}

// deadPeer ends the connection when the keepalive found the peer silent
// for too long, and says so in the log: nothing else would tell.
func (c *Conn) deadPeer(err error) {
	c.opts.logger.Warn("tether: closing connection: no answer to keepalive pings", "peer", c.peer.Name, "err", err)
	c.fail(err)
}

// Root returns a reference to the peer's root object: the object passed to
// NewServer when this side dialed, or the dialer's WithRoot object when this
// side is the server. The root reference is never released.
func (c *Conn) Root() *Ref { return c.root }

// Peer describes the other end of the connection.
func (c *Conn) Peer() remoteable.Peer { return c.peer }

// Done is closed when the connection has ended and every goroutine it
// started, handlers included, has returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Closed is closed as soon as the connection has ended, before its
// goroutines have finished (Done follows). Err then returns the cause.
func (c *Conn) Closed() <-chan struct{} { return c.dying }

// Err returns why the connection ended, or nil while it is up. It matches
// ErrGoingAway when the peer had said it was going away (GoingAway).
func (c *Conn) Err() error {
	select {
	case <-c.dying:
		return c.cause
	default:
		return nil
	}
}

// Close ends the connection. Pending calls on both sides fail, running
// handlers have their contexts cancelled. Close waits for the connection's
// own loops but not for handlers: wait on Done for those. It is idempotent
// and returns nil.
func (c *Conn) Close() error {
	c.fail(ErrClosed)
	<-c.loopsDone
	return nil
}

// fail starts teardown with cause; the first cause wins. It never blocks:
// the teardown runs in a goroutine of its own, which exists only from then
// until Done.
func (c *Conn) fail(cause error) {
	c.failOnce.Do(func() {
		c.cause = c.goneAway(cause)
		close(c.dying)
		go c.teardown()
	})
}

// writeFailed ends the connection after a failed write, unless the session
// had already ended: then the write only lost a race with the real cause,
// which the reader reports (readFailed) when the main stream ends with it.
func (c *Conn) writeFailed(err error) {
	if c.sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) {
		return // the reader reports the session's own cause
	}
	c.fail(err)
}

// protocolError tells the peer why (if the stream is idle) and closes.
func (c *Conn) protocolError(err error) {
	err = fmt.Errorf("%w: %w", ErrProtocol, err)
	c.opts.logger.Warn("tether: closing connection", "peer", c.peer.Name, "err", err)
	e := getEncoder(c)
	if encodeGoodbye(e, err) == nil {
		c.out.tryFinal(e.frame(), 200*time.Millisecond)
	}
	putEncoder(e)
	c.fail(err)
}

// othersWriting reports whether goroutines other than the caller are
// likely to write soon, so that a frame is better left to the sender's
// drain goroutine, which then carries theirs in the same write: more than
// one call of this side in flight, or more than one handler running. One
// handler is not enough: it is likely the caller itself (a handler calling
// back, or sending its result), which is better off writing at once, as
// net/rpc's callers do.
func (c *Conn) othersWriting() bool {
	return c.callsOut.Load() > 1 || c.callsIn.Load() > 1
}

// deadErr is the error for a call made after the connection ended.
func (c *Conn) deadErr() error {
	<-c.dying
	return c.linkErr(false, c.cause)
}

// linkErr is the error of a call on c, in flight or not, once c failed
// with cause. It names the peer; the caller adds the method (named).
func (c *Conn) linkErr(inFlight bool, cause error) *linkError {
	return &linkError{inFlight: inFlight, cause: cause, peer: c.peer.Name, addr: addrString(c.peer.Addr)}
}

// addrString is a's text, or "" when the address is not known or says
// nothing (a net.Pipe's).
func addrString(a net.Addr) string {
	if a == nil || a.Network() == "pipe" {
		return ""
	}
	return a.String()
}

// teardown ends the connection once fail has been called: it closes the
// session, fails what waits on it, waits for its goroutines and handlers,
// and closes Done.
func (c *Conn) teardown() {
	cause := c.cause
	c.wakeStreams()
	c.sess.Close()
	c.keep.stop() // after the session's close, which ends a ping in flight
	c.co.in.streams.stop()
	c.out.stop(c.linkErr(false, cause))
	c.failPending(cause)
	c.running.cancelAll()

	c.loops.Wait()
	c.streams.finishing.Wait()
	c.out.wait()
	close(c.loopsDone)
	c.Disconnected.Emit(cause)
	c.handlers.Wait()

	c.dropExports(cause)
	if c.onDone != nil {
		c.onDone()
	}
	close(c.done)
}

// dropExports empties the reference tables once the connection is over,
// telling each export it went (or, for one that can be asked for again
// after a failure, that it was lost).
func (c *Conn) dropExports(cause error) {
	exports := c.refs.close()
	// A connection that failed (reset, timed out), rather than one closed
	// by either side or for a protocol violation, may be followed by its
	// peer coming back for what it held (a feed, by its token).
	failed := !errors.Is(cause, ErrPeerClosed) && !errors.Is(cause, ErrClosed) && !errors.Is(cause, ErrProtocol)
	for _, ex := range exports {
		if o, ok := ex.obj.(linkLoss); ok && failed && !ex.permanent {
			o.ExportLost(c.peerKey()) // it may be asked for again on a new connection
		} else if !ex.permanent {
			releaseProxy(ex) // handles held on other connections for the peer
		}
	}
}

// sessionCause turns what yamux reports when a session ends into a cause.
func sessionCause(err error) error {
	switch {
	case err == nil:
		return ErrClosed // the session was closed locally
	case errors.Is(err, io.EOF), errors.Is(err, yamux.ErrSessionShutdown):
		// A session this side closes has failed with its own cause
		// (ErrClosed, ...) before yamux reports anything; a shutdown
		// without one is the peer's doing, which yamux reports as EOF or,
		// when the peer's close races with its last frames, as a plain
		// shutdown.
		return ErrPeerClosed
	case errors.Is(err, yamux.ErrKeepAliveTimeout):
		return fmt.Errorf("tether: peer stopped answering keepalives: %w", err)
	}
	return fmt.Errorf("tether: connection failed: %w", err)
}

// readLoop reads the main stream's frames and acts on each, until the
// stream fails or the peer breaks the protocol.
func (c *Conn) readLoop() {
	defer c.loops.Done()
	corked := false
	for {
		body, err := c.fr.Next()
		if err != nil {
			c.readFailed(err)
			return
		}
		// While more frames are already buffered, answers wait so that they
		// leave together; before blocking for input, everything goes out.
		if more := c.fr.Ready(); more != corked {
			if more {
				c.out.cork()
			} else {
				c.out.uncork()
			}
			corked = more
		}
		if err := c.handleFrame(body); err != nil {
			c.protocolError(err)
			return
		}
	}
}

// readFailed ends the connection after the main stream failed, with the
// cause that says most.
func (c *Conn) readFailed(err error) {
	if c.Err() != nil {
		return // the connection is closing: its cause is known
	}
	switch {
	case errors.Is(err, cborx.ErrFrameTooLarge), errors.Is(err, cborx.ErrSyntax),
		errors.Is(err, io.ErrUnexpectedEOF) && !c.sess.IsClosed():
		c.protocolError(err) // a frame cut short by the peer is a violation too
	case c.sess.IsClosed():
		c.sessionEnded() // the session's own cause says more
	default:
		c.fail(fmt.Errorf("tether: main stream failed: %w", err))
	}
}

// acceptor starts the goroutine that accepts the message streams the peer
// opens only while some wait to be accepted: an idle connection runs none.
// The read guard sees each stream the peer opens (a SYN) in yamux's receive
// loop, just before yamux queues it for AcceptStream, and calls opened.
type acceptor struct {
	mu      sync.Mutex
	waiting int    // streams the peer opened that were not accepted yet
	running bool   // the accepting goroutine runs
	start   func() // starts it; nil until the connection starts
	stopped bool   // the connection is tearing down: start nothing more
}

// opened counts a stream the peer opened and starts the accepting goroutine
// if none runs.
func (a *acceptor) opened() {
	a.mu.Lock()
	a.waiting++
	a.kick()
	a.mu.Unlock()
}

// begin lets the acceptor start goroutines (with start) from now on, for
// the streams already counted too.
func (a *acceptor) begin(start func()) {
	a.mu.Lock()
	a.start = start
	a.kick()
	a.mu.Unlock()
}

// kick starts the accepting goroutine when streams wait and none runs.
// a.mu held.
func (a *acceptor) kick() {
	if a.waiting > 0 && !a.running && a.start != nil && !a.stopped {
		a.running = true
		a.start()
	}
}

// accepted counts an accepted stream and reports whether the accepting
// goroutine should go on: false, and it must exit, when none waits.
func (a *acceptor) accepted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiting--
	if a.waiting > 0 {
		return true
	}
	// Under a.mu, as opened is: a stream counted after this point finds
	// no goroutine running and starts one.
	a.running = false
	return false
}

// stop keeps the acceptor from starting goroutines. The teardown calls it
// before it waits for the connection's goroutines.
func (a *acceptor) stop() {
	a.mu.Lock()
	a.stopped = true
	a.mu.Unlock()
}

// startAccepting starts the goroutine that accepts the streams the peer
// opened; the acceptor calls it, holding its lock.
func (c *Conn) startAccepting() {
	c.loops.Add(1) // the acceptor is not stopped: the teardown has not begun to wait
	go c.acceptStreams()
}

// acceptStreams accepts the message streams the peer opened, until none
// waits or the session ends. A stream yamux refused (its backlog full, a
// hostile peer) leaves it waiting for the next one, or for the session's end.
func (c *Conn) acceptStreams() {
	defer c.loops.Done()
	for {
		st, err := c.sess.AcceptStream()
		if err != nil || st == nil {
			c.fail(sessionCause(err))
			return
		}
		if !c.takeStream(st) || !c.co.in.streams.accepted() {
			return
		}
	}
}

// takeStream starts reading a message stream the peer opened; it reports
// false when the connection ends instead (too many streams, or closing).
func (c *Conn) takeStream(st *yamux.Stream) bool {
	if c.streams.fromPeer.Add(1) > maxPeerMsgStreams {
		st.Close()
		c.protocolError(fmt.Errorf("more than %d message streams", maxPeerMsgStreams))
		return false
	}
	if !c.streams.track(st) {
		st.Close()
		return false
	}
	c.loops.Add(1)
	go c.readMsgStream(st)
	return true
}

// sessionEnded fails the connection with the cause its yamux session
// ended with, which yamux tells only through AcceptStream.
func (c *Conn) sessionEnded() {
	for {
		st, err := c.sess.AcceptStream()
		if err != nil || st == nil {
			c.fail(sessionCause(err))
			return
		}
		st.Close() // a stream the peer opened as the session ended
	}
}

// readMsgStream reads the messages a message stream of the peer's carries,
// until the peer closes it or the connection ends.
func (c *Conn) readMsgStream(st *yamux.Stream) {
	defer c.loops.Done()
	defer st.Close()
	fr := newMsgReader(st, c.opts.maxMessageSize)
	for {
		body, err := c.nextMsgBody(fr, st)
		if err != nil {
			c.msgStreamFailed(err)
			return
		}
		if body == nil {
			continue // returnDirect handled it
		}
		var owned ownedBody
		if err := c.handleBody(body, &owned); err != nil {
			c.protocolError(err)
			return
		}
		if !owned.kept {
			fr.reuse(body)
		}
	}
}

// nextMsgBody reads a message stream's next frame: its body, or nil when
// returnDirect read it into the caller's reply.
func (c *Conn) nextMsgBody(fr *msgReader, st *yamux.Stream) ([]byte, error) {
	n, err := fr.frameLen()
	if err != nil {
		return nil, err
	}
	if done, err := c.returnDirect(fr, st, n); done || err != nil {
		return nil, err
	}
	return fr.body(n)
}

// msgStreamFailed ends the connection after a message stream's read
// failed, unless the stream only ended with the connection.
func (c *Conn) msgStreamFailed(err error) {
	if !errors.Is(err, io.EOF) && !c.sess.IsClosed() && c.Err() == nil {
		c.protocolError(fmt.Errorf("message stream: %w", err))
	}
}
