package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// Message types: the first element of every frame. See docs/protocol.md.
const (
	msgHello   = 0
	msgWelcome = 1
	msgReject  = 2
	msgCall    = 3
	msgReturn  = 4
	msgFail    = 5
	msgCancel  = 6
	msgRelease = 7
	msgGoodbye = 8
)

const (
	// defaultBulkThreshold is the frame size above which a message goes on
	// a message stream, off the main stream, so that it cannot hold up small
	// calls.
	defaultBulkThreshold = 32 << 10
	// maxBulkStreams is how many message streams this side opens at most;
	// large messages take turns on them.
	maxBulkStreams = 4
	// maxPeerBulkStreams is how many message streams the peer may open.
	maxPeerBulkStreams = 16
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
	// issuer is what feed tokens issued on this connection are valid
	// for (internal/captable): its server's number, or 0 for a dialed
	// connection, which gets one of its own when it first needs it.
	issuer    uint64
	issuerKey string // issuer, and the peer's verified identity
	issuerM   sync.Once

	pmu      sync.Mutex
	pending  map[uint64]*call
	nextCall uint64
	pclosed  bool

	rmu           sync.Mutex
	exports       map[uint64]*export
	exportIDs     map[any]uint64
	subscriptions int // exports that are subscriptions to this side's models (cacheSubscription)
	nextExport    uint64
	gates         replyGates // exports that hold replies back (read-your-writes)
	imports       map[uint64]*importEntry
	nextGen       uint64

	imu         sync.Mutex
	inflight    map[uint64]*callCtx
	earlyCancel map[uint64]time.Time // cancels that overtook their calls, and when they came
	iclosed     bool

	work       chan *inCall       // hands calls to idle handler goroutines
	bulkIdle   chan *yamux.Stream // our message streams not being written to
	bulkOpened atomic.Int32       // message streams this side opened
	bulkIn     atomic.Int32       // message streams the peer opened

	smu     sync.Mutex
	streams []*yamux.Stream // every message stream, the peer's and ours
	sclosed bool

	callsOut atomic.Int64
	callsIn  atomic.Int64

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
		pending:     map[uint64]*call{},
		exports:     map[uint64]*export{},
		exportIDs:   map[any]uint64{},
		imports:     map[uint64]*importEntry{},
		inflight:    map[uint64]*callCtx{},
		earlyCancel: map[uint64]time.Time{},
		work:        make(chan *inCall),
		bulkIdle:    make(chan *yamux.Stream, maxBulkStreams),
		dying:       make(chan struct{}),
		loopsDone:   make(chan struct{}),
		done:        make(chan struct{}),
	}
	c.root = &Ref{c: c, id: 0}
	if localRoot != nil {
		ex := newExport(localRoot)
		ex.permanent = true
		c.exports[0] = ex
		if isComparable(localRoot) {
			c.exportIDs[exportKey(localRoot)] = 0
		}
	}
	c.out = newSender(main, o.writeTimeout, c.writeFailed)
	c.out.peer, c.out.addr = peer.Name, addrString(peer.Addr)
	return c
}

// start runs the connection's goroutines: the reader, the acceptor of
// message streams, the sender's loop and the monitor that tears down.
func (c *Conn) start() *Conn {
	c.loops.Add(3)
	go c.readLoop()
	go c.acceptLoop()
	go func() { defer c.loops.Done(); c.out.loop() }()
	go c.monitor()
	return c
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

// Err returns why the connection ended, or nil while it is up.
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

// fail starts teardown with cause; the first cause wins. It never blocks.
func (c *Conn) fail(cause error) {
	c.failOnce.Do(func() {
		c.cause = cause
		close(c.dying)
	})
}

// writeFailed ends the connection after a failed write, unless the session
// had already ended: then the write only lost a race with the real cause,
// which the accept loop reports.
func (c *Conn) writeFailed(err error) {
	if c.sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) {
		return // the accept loop reports the session's own cause
	}
	c.fail(err)
}

// protocolError tells the peer why (if the stream is idle) and closes.
func (c *Conn) protocolError(err error) {
	err = fmt.Errorf("%w: %w", ErrProtocol, err)
	c.opts.logger.Warn("tether: closing connection", "peer", c.peer.Name, "err", err)
	e := getEncoder(c)
	e.buf = cborx.AppendArray(e.buf, 2)
	e.buf = cborx.AppendUint(e.buf, msgGoodbye)
	if e.wireError(err) == nil {
		c.out.tryFinal(e.frame(), 200*time.Millisecond)
	}
	putEncoder(e)
	c.fail(err)
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

// monitor tears the connection down once fail has been called.
func (c *Conn) monitor() {
	<-c.dying
	cause := c.cause
	c.wakeStreams()
	c.sess.Close()
	c.out.stop(c.linkErr(false, cause))

	c.pmu.Lock()
	c.pclosed = true
	pending := c.pending
	c.pending = nil
	c.pmu.Unlock()
	for _, cl := range pending {
		le := c.linkErr(true, cause)
		le.method = cl.method
		cl.err = le
		cl.done <- struct{}{}
	}

	c.imu.Lock()
	c.iclosed = true
	for _, x := range c.inflight {
		x.cancel(context.Canceled, false)
	}
	c.imu.Unlock()

	c.loops.Wait()
	close(c.loopsDone)
	c.Disconnected.Emit(cause)
	c.handlers.Wait()

	c.rmu.Lock()
	exports := c.exports
	c.exports, c.exportIDs, c.imports = nil, nil, nil
	c.rmu.Unlock()
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
	if c.onDone != nil {
		c.onDone()
	}
	close(c.done)
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

// wakeStreams ends every blocked read and write on the connection's
// streams with an expired deadline, before the session closes: yamux
// v0.1.2's Stream.Read and write spin between the session's shutdown and
// the moment it force-closes their stream (hashicorp/yamux#176).
func (c *Conn) wakeStreams() {
	past := time.Unix(1, 0)
	c.smu.Lock()
	c.sclosed = true
	streams := c.streams
	c.smu.Unlock()
	c.main.SetDeadline(past)
	for _, st := range streams {
		st.SetDeadline(past)
	}
}

// track records a message stream for wakeStreams; false means the
// connection is closing and st must not be used.
func (c *Conn) track(st *yamux.Stream) bool {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.sclosed {
		return false
	}
	c.streams = append(c.streams, st)
	return true
}

func (c *Conn) readFailed(err error) {
	if c.Err() != nil {
		return // the connection is closing: its cause is known
	}
	switch {
	case errors.Is(err, cborx.ErrFrameTooLarge), errors.Is(err, cborx.ErrSyntax),
		errors.Is(err, io.ErrUnexpectedEOF) && !c.sess.IsClosed():
		c.protocolError(err) // a frame cut short by the peer is a violation too
	case c.sess.IsClosed():
		// The accept loop reports the session's own, more telling, cause.
	default:
		c.fail(fmt.Errorf("tether: main stream failed: %w", err))
	}
}

func (c *Conn) acceptLoop() {
	defer c.loops.Done()
	for {
		st, err := c.sess.AcceptStream()
		if err != nil || st == nil {
			c.fail(sessionCause(err))
			return
		}
		if c.bulkIn.Add(1) > maxPeerBulkStreams {
			st.Close()
			c.protocolError(fmt.Errorf("more than %d message streams", maxPeerBulkStreams))
			return
		}
		if !c.track(st) {
			st.Close()
			return
		}
		c.loops.Add(1)
		go c.readBulk(st)
	}
}

// readBulk reads the messages a message stream of the peer's carries, until
// the peer closes it or the connection ends.
func (c *Conn) readBulk(st *yamux.Stream) {
	defer c.loops.Done()
	defer st.Close()
	fr := cborx.NewFrameReader(st, c.opts.maxMessageSize, readBufferSize)
	for {
		body, err := fr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !c.sess.IsClosed() && c.Err() == nil {
				c.protocolError(fmt.Errorf("message stream: %w", err))
			}
			return
		}
		if err := c.handleFrame(body); err != nil {
			c.protocolError(err)
			return
		}
	}
}

// handleFrame validates a frame and acts on it. An error is a protocol
// violation that ends the connection; problems with one call are answered
// to the caller instead.
func (c *Conn) handleFrame(body []byte) (err error) {
	defer func() {
		// A decoding bug must not take the process down: it ends this
		// connection only. Fuzz tests want to see it.
		if p := recover(); p != nil {
			if fuzzing.Load() {
				panic(p)
			}
			err = fmt.Errorf("internal error handling a message: %v", p)
		}
	}()
	if err := cborx.Validate(body, decodeLimits); err != nil {
		return err
	}
	r := cborx.NewReader(body)
	n, err := r.ReadArray()
	if err != nil || n < 2 {
		return errors.New("a message must be an array of at least two items")
	}
	typ, err := r.ReadUint()
	if err != nil {
		return errors.New("message type must be an unsigned integer")
	}
	switch typ {
	case msgCall, msgReturn, msgFail:
		acct := newRefAccount(body)
		defer acct.settle(c)
		if typ == msgCall {
			return c.handleCall(&r, n, acct)
		}
		return c.handleResult(&r, n, typ, acct)
	case msgCancel:
		id, err := r.ReadUint()
		if err != nil {
			return errors.New("malformed cancel")
		}
		mayPrecede := false
		if n > 2 {
			h, err := r.ReadHead()
			if err != nil || h.Major != cborx.MajorSimple || (h.AI != cborx.SimpleTrue && h.AI != cborx.SimpleFalse) {
				return errors.New("malformed cancel: the third element must be a boolean")
			}
			mayPrecede = h.AI == cborx.SimpleTrue
		}
		c.handleCancel(id, mayPrecede)
		return nil
	case msgRelease:
		id, err1 := r.ReadUint()
		count, err2 := r.ReadUint()
		if n < 3 || err1 != nil || err2 != nil {
			return errors.New("malformed release")
		}
		return c.decref(id, count)
	case msgGoodbye:
		d := decoder{r: r, c: c}
		re, err := d.wireError()
		if err != nil {
			return err
		}
		c.fail(fmt.Errorf("%w: %w", ErrPeerClosed, re))
		return nil
	}
	return fmt.Errorf("unexpected message type %d", typ)
}

// handleCall decodes a call and starts its handler, or answers at once with
// the reason it cannot run. Arguments are decoded here, in stream order, so
// that a reference to one of our objects is resolved before a later Release
// of it is applied; but only once the target's policy admitted the caller,
// so that a refused call costs nothing and learns nothing.
func (c *Conn) handleCall(r *cborx.Reader, n int, acct *refAccount) error {
	id, err1 := r.ReadUint()
	target, err2 := r.ReadUint()
	name, err3 := r.ReadText()
	timeout, err4 := r.ReadUint()
	args := *r // the arguments, decoded once the call is admitted
	argc, err5 := r.ReadArray()
	if n < 6 || err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return errors.New("malformed call: want [3, id, target, method, timeout, [args...]]")
	}
	// A call that cannot run is answered at once; references among its
	// arguments that did not become handles are released by acct.
	reject := func(err error) error {
		c.postFail(id, err)
		return nil
	}
	ext, extErr := readCallExt(r, n, argc)
	if extErr != nil && !errors.Is(extErr, ErrTooManyHops) {
		return extErr
	}

	c.imu.Lock()
	_, dup := c.inflight[id]
	_, cancelled := c.earlyCancel[id]
	delete(c.earlyCancel, id)
	full := len(c.inflight) >= c.opts.maxCalls
	c.imu.Unlock()
	if dup {
		return errDuplicateCall(id)
	}
	if cancelled {
		return nil
	}
	if full {
		return reject(fmt.Errorf("%w: at most %d at once", ErrTooManyCalls, c.opts.maxCalls))
	}
	if extErr != nil {
		return reject(extErr)
	}
	if target == 0 && string(name) == captable.Method {
		// A feed resumed by its token (feedcap.go): answered whatever the
		// root is, or without one.
		tok, err := readFeedCall(args, argc)
		if err != nil {
			return reject(err)
		}
		t := &inCall{id: id, ex: &export{}, name: captable.Method, name2: tok}
		t.cc.c = c
		t.ctx = &t.cc
		if timeout > 0 {
			t.cc.deadline = time.Now().Add(time.Duration(min(timeout, uint64(1<<62))))
		}
		return c.startCall(t)
	}
	ex := c.lookupExport(target)
	if ex == nil {
		return reject(fmt.Errorf("%w: no object %d was given to you", ErrUnknownReference, target))
	}

	t := &inCall{id: id, ex: ex}
	t.cc.c = c
	t.ctx = &t.cc
	t.cc.waitLink = ext.waitLink
	chain := ext.acting.ids
	if chain != nil {
		p := c.peer
		p.ForwardedFor = chain
		t.cc.peer, t.cc.hops = p, ext.acting.hops
	}
	if timeout > 0 {
		t.cc.deadline = time.Now().Add(time.Duration(min(timeout, uint64(1<<62))))
	}
	if ex.guarded {
		if err := admit(&t.cc, ex.obj, string(name)); err != nil {
			return reject(err)
		}
	} else if chain != nil && c.perPeerRoot {
		return reject(fmt.Errorf("%w: %s is called for %v through %v, but this server gives each peer a root of its own "+
			"(WithRealm) and does not let it be lent: the server can guard the object (remoteable.Guarded) to admit "+
			"calls passed on for others, and a caller acting on its own authority makes the call with "+
			"broker.AsSelf(ctx)", remoteable.ErrAccessDenied, name, chain[0], c.peer.Identity()))
	}
	if _, err := args.ReadArray(); err != nil {
		return errors.New("malformed call arguments")
	}
	d := decoder{r: args, c: c, opaque: ex.proxy != nil, acct: acct}

	if ex.proxy != nil {
		t.name = string(name)
		t.cc.forward = true
		t.args = make([]any, argc)
		for i := range t.args {
			var err error
			if t.args[i], err = d.generic(); err != nil {
				d.undo()
				return reject(fmt.Errorf("%w: argument %d: %w", ErrBadArguments, i+1, err))
			}
		}
		t.refs = d.imported
		return c.startCall(t)
	}

	if string(name) == DescribeMethod {
		if argc != 0 {
			return reject(fmt.Errorf("%w: %s takes no arguments", ErrBadArguments, DescribeMethod))
		}
		t.name = DescribeMethod
		return c.startCall(t)
	}
	m := ex.typ.methods[string(name)]
	if m == nil {
		return reject(ex.typ.noMethod(ex.obj, string(name)))
	}
	if lo, hi := m.arity(); argc < lo || (hi >= 0 && argc > hi) {
		return reject(argCountError(m.name, lo, hi, argc))
	}
	t.m = m
	first := 1
	if m.hasCtx {
		first = 2
	}
	if first+argc <= len(t.inl) {
		t.in = t.inl[:first+argc]
	} else {
		t.in = make([]reflect.Value, first+argc)
	}
	t.in[0] = ex.recv
	if m.hasCtx {
		t.in[1] = reflect.ValueOf(&t.ctx).Elem() // already a context.Context: no conversion
	}
	for i := 0; i < argc; i++ {
		pi := m.paramInfo(i)
		if refusesNil(pi) {
			if h, err := d.r.PeekHead(); err == nil && h.IsNull() {
				d.undo()
				return reject(errNilArgument(i, m.name, pi))
			}
		}
		v := t.slot(i, pi)
		if err := d.value(v, pi); err != nil {
			d.undo()
			return reject(fmt.Errorf("%w: argument %d of %s: %w", ErrBadArguments, i+1, m.name, err))
		}
		t.in[first+i] = v
	}
	t.refs = d.imported
	t.attach = d.attach
	return c.startCall(t)
}

// inCall is one incoming call: its context, its target and its decoded
// arguments, in one allocation.
type inCall struct {
	cc    callCtx
	ctx   context.Context // &cc, boxed once so reflect passes it without copying
	id    uint64
	ex    *export
	m     *method // nil for a proxy
	name  string  // a proxy's method name, or a built-in's
	name2 string  // a feed call's token
	args  []any   // a proxy's arguments
	refs  []*Ref  // handles decoded from the arguments, released if the call never runs
	// attach lists the mirrors among the arguments, attached by the handler
	// goroutine before the method runs.
	attach []attachTask

	in  []reflect.Value
	inl [6]reflect.Value
	str [2]string // storage for the first string and []byte arguments
	byt [2][]byte
}

// slot returns a settable value for argument i: inline storage for plain
// strings and byte slices, a new value otherwise.
func (t *inCall) slot(i int, pi *typeInfo) reflect.Value {
	if i < 2 {
		switch pi.t {
		case stringType:
			return reflect.ValueOf(&t.str[i]).Elem()
		case bytesType:
			return reflect.ValueOf(&t.byt[i]).Elem()
		}
	}
	return reflect.New(pi.t).Elem()
}

var (
	stringType = reflect.TypeFor[string]()
	bytesType  = reflect.TypeFor[[]byte]()
)

// workerIdle is how long a handler goroutine waits for another call before
// it exits.
const workerIdle = 5 * time.Second

// errDuplicateCall is the protocol violation of a call whose id is that
// of a call still in flight: the first call's handler could no longer be
// cancelled or answered, and teardown would not find it.
func errDuplicateCall(id uint64) error {
	return fmt.Errorf("call id %d reused while that call is still in flight", id)
}

// startCall registers a decoded call and hands it to an idle handler
// goroutine, or starts one. A call whose id is in flight already (the main
// stream and a message stream race to here) is a protocol violation.
func (c *Conn) startCall(t *inCall) error {
	c.imu.Lock()
	_, dup := c.inflight[t.id]
	if c.iclosed || dup {
		c.imu.Unlock()
		for _, r := range t.refs {
			r.Release()
		}
		if dup {
			return errDuplicateCall(t.id)
		}
		return nil
	}
	c.inflight[t.id] = &t.cc
	c.callsIn.Add(1)
	select {
	case c.work <- t:
	default:
		c.handlers.Add(1)
		go c.worker(t)
	}
	c.imu.Unlock()
	return nil
}

// worker runs calls until it has been idle for a whole workerIdle period or
// the connection ends. Reusing goroutines saves a closure and a goroutine
// start per call. The idle timer is re-armed once per period, not per call:
// a worker that ran a call during the period lives on.
func (c *Conn) worker(t *inCall) {
	defer c.handlers.Done()
	idle := time.NewTicker(workerIdle)
	defer idle.Stop()
	for t != nil {
		c.run(t)
		t = c.awaitWork(idle.C)
	}
}

// awaitWork waits for the next call for a worker, returning nil when the
// worker should exit: a whole idle period without work, or the end of the
// connection.
func (c *Conn) awaitWork(tick <-chan time.Time) *inCall {
	ranThisPeriod := true
	for {
		select {
		case t := <-c.work:
			return t
		case <-tick:
			if !ranThisPeriod {
				return nil
			}
			ranThisPeriod = false
		case <-c.dying:
			return nil
		}
	}
}

// run executes one call and sends its result unless the caller cancelled.
func (c *Conn) run(t *inCall) {
	var o outcome
	// The gates may hold the reply back until what the handler changed has
	// reached the caller's mirrors (read-your-writes, see package cache).
	marks := c.gates.mark(t.ex.obj)
	switch err := runAttach(t.ctx, t.attach); {
	case err != nil:
		o.err = fmt.Errorf("%w: %w", ErrBadArguments, err)
	case t.m != nil:
		o = c.invoke(t)
	case t.name == captable.Method && t.ex.obj == nil:
		o = c.feedByToken(t)
	case t.ex.proxy != nil:
		o = c.forward(t)
	default:
		o = c.describe(t)
	}
	c.gates.wait(t.ctx, marks)
	c.imu.Lock()
	delete(c.inflight, t.id)
	c.imu.Unlock()
	c.callsIn.Add(-1)
	unwanted := t.cc.cancelledByPeer()
	t.cc.cancel(context.Canceled, false)
	if !unwanted {
		c.sendResult(t.id, &o)
	}
}

// outcome is what a handler produced.
type outcome struct {
	v       reflect.Value // a method's result, typed by ti
	ti      *typeInfo
	generic any // a proxy's result
	feed    any // a feed call's result, sent as a Cacheable
	byRef   bool
	tb      string
	err     error
}

// recoverPanic turns a handler panic into ErrPanic for this caller only.
// Deferred directly by the handler.
func (o *outcome) recoverPanic(tracebacks bool, method string) {
	if p := recover(); p != nil {
		o.err = fmt.Errorf("%w: %s: %v", ErrPanic, method, p)
		if tracebacks {
			o.tb = string(debug.Stack())
		}
	}
}

// invoke runs a method on a local object.
func (c *Conn) invoke(t *inCall) (o outcome) {
	defer o.recoverPanic(c.opts.tracebacks, t.m.name)
	out := t.m.fn.Call(t.in)
	if e := out[len(out)-1]; !e.IsNil() {
		o.err = e.Interface().(error)
		return o
	}
	if t.m.result != nil {
		o.v, o.ti, o.byRef = out[0], t.m.result, t.m.opts.ByReference
	}
	return o
}

// describe answers DescribeMethod for a local object.
func (c *Conn) describe(t *inCall) (o outcome) {
	defer o.recoverPanic(c.opts.tracebacks, DescribeMethod)
	d := Describe(t.ex.obj)
	if t.ex.guarded {
		// A peer sees only what it may call.
		d.Methods = slices.DeleteFunc(d.Methods, func(m MethodDescription) bool {
			return admit(t.ctx, t.ex.obj, m.Name) != nil
		})
		d.Skipped = slices.DeleteFunc(d.Skipped, func(m SkippedMethod) bool {
			return admit(t.ctx, t.ex.obj, m.Name) != nil
		})
	}
	o.generic = d
	return o
}

// forward passes a call to an object that takes every call through its Call
// method (a proxy for a reference on another connection, say).
func (c *Conn) forward(t *inCall) (o outcome) {
	defer o.recoverPanic(c.opts.tracebacks, t.name)
	o.err = t.ex.proxy.Call(&t.cc, t.name, &o.generic, t.args...)
	if o.err == nil && t.ex.guarded && t.name == DescribeMethod {
		// The description comes from further on; the methods this
		// object's policy refuses the caller are left out of it here.
		o.generic = withoutMethods(o.generic, func(name string) bool {
			return admit(t.ctx, t.ex.obj, name) != nil
		})
	}
	return o
}

// withoutMethods drops from a description held as generic data (a map
// whose "methods" and "skipped" list maps with a "name") the methods
// refused reports.
func withoutMethods(desc any, refused func(name string) bool) any {
	keep := func(methods any) any {
		list, ok := methods.([]any)
		if !ok {
			return methods
		}
		return slices.DeleteFunc(slices.Clone(list), func(m any) bool {
			var name any
			switch mm := m.(type) {
			case map[string]any:
				name = mm["name"]
			case map[any]any:
				name = mm["name"]
			}
			s, _ := name.(string)
			return refused(s)
		})
	}
	switch d := desc.(type) {
	case map[string]any:
		d["methods"] = keep(d["methods"])
		if _, ok := d["skipped"]; ok {
			d["skipped"] = keep(d["skipped"])
		}
	case map[any]any:
		d["methods"] = keep(d["methods"])
		if _, ok := d["skipped"]; ok {
			d["skipped"] = keep(d["skipped"])
		}
	}
	return desc
}

// admit asks a guarded object's policy whether the call ctx belongs to may
// invoke method. A policy that panics refuses the call.
func admit(ctx context.Context, obj any, method string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: the access policy of %s panicked: %v", ErrPanic, method, p)
		}
	}()
	p := obj.(remoteable.Guarded).RemotePolicy()
	if p == nil {
		return nil
	}
	return p.Allow(ctx, method)
}

// sendResult answers call id with a handler's outcome.
func (c *Conn) sendResult(id uint64, o *outcome) {
	e := getEncoder(c)
	defer putEncoder(e)
	err := o.err
	if err == nil {
		e.buf = cborx.AppendArray(e.buf, 3)
		e.buf = cborx.AppendUint(e.buf, msgReturn)
		e.buf = cborx.AppendUint(e.buf, id)
		e.level = resultLevel
		err = e.result(o)
		if err == nil && e.bodyLen() > c.peerMax {
			err = fmt.Errorf("%w: the result is %d bytes; the caller accepts %d", ErrMessageTooLarge, e.bodyLen(), c.peerMax)
		}
		if err == nil {
			err = e.checkItems("the result")
		}
		if err != nil {
			e.undo()
			e.reset()
			if !errors.Is(err, ErrMessageTooLarge) && !errors.Is(err, ErrTooManyReferences) {
				err = fmt.Errorf("tether: cannot send result: %w", inner{err})
			}
		}
	}
	if err != nil {
		e.buf = cborx.AppendArray(e.buf, 3)
		e.buf = cborx.AppendUint(e.buf, msgFail)
		e.buf = cborx.AppendUint(e.buf, id)
		if e.wireErrorTB(err, o.tb) != nil {
			return
		}
	}
	if c.sendFrame(context.Background(), e) != nil {
		e.undo()
	}
}

// postFail answers call id with err from a goroutine that must not block.
func (c *Conn) postFail(id uint64, err error) {
	e := getEncoder(c)
	defer putEncoder(e)
	e.buf = cborx.AppendArray(e.buf, 3)
	e.buf = cborx.AppendUint(e.buf, msgFail)
	e.buf = cborx.AppendUint(e.buf, id)
	if e.wireError(err) == nil {
		c.out.post(e.frame())
	}
}

func (c *Conn) handleCancel(id uint64, mayPrecede bool) {
	c.imu.Lock()
	defer c.imu.Unlock()
	if x, ok := c.inflight[id]; ok {
		x.cancel(context.Canceled, true)
		return
	}
	if !mayPrecede {
		return // the call came on the main stream before its cancel: it is over
	}
	// The call went on a message stream and may still be on its way:
	// remember the cancel until it comes, or until it cannot come any more.
	now := time.Now()
	for old, at := range c.earlyCancel {
		if now.Sub(at) > 2*c.opts.writeTimeout {
			delete(c.earlyCancel, old)
		}
	}
	if len(c.earlyCancel) < c.opts.maxCalls {
		c.earlyCancel[id] = now
	}
}

// handleResult completes the pending call a Return or Fail answers.
func (c *Conn) handleResult(r *cborx.Reader, n int, typ uint64, acct *refAccount) error {
	id, err := r.ReadUint()
	if err != nil || n < 3 {
		return errors.New("malformed result")
	}
	c.pmu.Lock()
	cl := c.pending[id]
	delete(c.pending, id)
	c.pmu.Unlock()
	if cl == nil { // the caller gave up: acct releases the result's references
		return nil
	}
	d := decoder{r: *r, c: c, opaque: cl.opaque, acct: acct}
	if typ == msgFail {
		re, err := d.wireError()
		if err != nil {
			d.undo()
			cl.err = fmt.Errorf("%w: malformed error: %w", ErrProtocol, err)
		} else {
			cl.err = re
		}
	} else if cl.reply != nil {
		if err := d.reply(cl.reply); err != nil {
			d.undo()
			cl.err = fmt.Errorf("%w: %w", ErrBadReply, err)
		} else {
			cl.attach = d.attach
		}
	}
	cl.done <- struct{}{}
	return nil
}

// sendFrame sends an encoded message: large ones on a message stream, unless
// they hold a reference to one of the receiver's objects, whose order
// relative to that reference's release must be kept.
func (c *Conn) sendFrame(ctx context.Context, e *encoder) error {
	frame := e.frame()
	var err error
	if c.onMessageStream(e) {
		err = c.sendBulk(ctx, frame)
	} else {
		err = c.out.send(ctx, frame, c.callsOut.Load() > 1 || c.callsIn.Load() > 0)
	}
	if err == nil {
		return nil
	}
	var le *linkError
	if errors.As(err, &le) && errors.Is(le.cause, yamux.ErrSessionShutdown) {
		// yamux says only that the session is gone; the accept loop is
		// reporting why (the peer closed it, say) at this moment.
		select {
		case <-c.dying:
			cp := *le
			cp.cause = c.cause
			return &cp
		case <-ctx.Done():
		}
	}
	return err
}

// onMessageStream reports whether sendFrame sends e's message off the main
// stream.
func (c *Conn) onMessageStream(e *encoder) bool {
	return e.bodyLen()+cborx.FramePrefix > c.opts.bulkThreshold && !e.homecoming
}

// sendBulk writes a large message on one of this side's message streams.
func (c *Conn) sendBulk(ctx context.Context, frame []byte) error {
	st, err := c.bulkStream(ctx)
	if err != nil {
		return err
	}
	st.SetWriteDeadline(time.Now().Add(c.opts.writeTimeout))
	if _, err := st.Write(frame); err != nil {
		// The stream may hold part of the frame now: it cannot be used again.
		if isTimeout(err) {
			err = ErrWriteTimeout
		}
		c.writeFailed(err)
		return c.linkErr(true, err)
	}
	c.bulkIdle <- st // never blocks: there are never more streams than room
	return nil
}

// bulkStream takes an idle message stream, opens one if fewer than
// maxBulkStreams exist, or waits for one to be free.
func (c *Conn) bulkStream(ctx context.Context) (*yamux.Stream, error) {
	select {
	case st := <-c.bulkIdle:
		return st, nil
	default:
	}
	for n := c.bulkOpened.Load(); n < maxBulkStreams; n = c.bulkOpened.Load() {
		if c.bulkOpened.CompareAndSwap(n, n+1) {
			st, err := c.sess.OpenStream()
			if err != nil {
				c.fail(sessionCause(err))
				return nil, c.deadErr()
			}
			if !c.track(st) {
				st.Close()
				return nil, c.deadErr()
			}
			return st, nil
		}
	}
	select {
	case st := <-c.bulkIdle:
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.dying:
		return nil, c.deadErr()
	}
}

// fuzzing lets panics in handleFrame through, for the fuzz tests.
var fuzzing atomic.Bool

// ConnStats is a snapshot of a connection's resources and traffic.
type ConnStats struct {
	CallsOut  int   `json:"callsOut"`  // calls this side is waiting on
	CallsIn   int   `json:"callsIn"`   // handlers running for the peer
	Exports   int   `json:"exports"`   // objects this side holds for the peer (the root included)
	Imports   int   `json:"imports"`   // references to the peer's objects this side holds (not the root)
	Observers int   `json:"observers"` // the peer's mirrors of this side's models (subscriptions this side feeds)
	Mirrors   int   `json:"mirrors"`   // this side's mirrors of the peer's models
	BytesOut  int64 `json:"bytesOut"`  // bytes written to the network connection, yamux framing included
	BytesIn   int64 `json:"bytesIn"`   // bytes read from it
	Writes    int64 `json:"writes"`    // write calls on the network connection (system calls, for TCP)
	Reads     int64 `json:"reads"`     // read calls on it
}

// Stats returns a snapshot of the connection's resources.
func (c *Conn) Stats() ConnStats {
	c.rmu.Lock()
	s := ConnStats{Exports: len(c.exports), Imports: len(c.imports)}
	for _, ex := range c.exports {
		switch ex.obj.(type) {
		case cacheSubscription:
			s.Observers++
		case cacheObserver:
			s.Mirrors++
		}
	}
	c.rmu.Unlock()
	s.CallsOut = int(c.callsOut.Load())
	s.CallsIn = int(c.callsIn.Load())
	s.BytesOut, s.BytesIn = c.co.written.Load(), c.co.read.Load()
	s.Writes, s.Reads = c.co.writes.Load(), c.co.reads.Load()
	return s
}
