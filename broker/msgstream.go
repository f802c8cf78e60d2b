package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/cborx"
)

// msgStreams are a connection's message streams (docs/protocol.md §4):
// yamux streams besides the main one that carry the large messages, so
// that they cannot hold up small calls.
type msgStreams struct {
	idle     chan *yamux.Stream // this side's message streams not being written to
	opened   atomic.Int32       // message streams this side opened
	fromPeer atomic.Int32       // message streams the peer opened

	mu        sync.Mutex
	all       []*yamux.Stream // every message stream, the peer's and ours
	closed    bool            // the connection is closing: no stream may be added
	finishing sync.WaitGroup  // finishFrame goroutines; added to under mu while !closed
}

// track records a message stream for wakeStreams; false means the
// connection is closing and st must not be used.
func (s *msgStreams) track(st *yamux.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.all = append(s.all, st)
	return true
}

// wakeStreams ends every blocked read and write on the connection's
// streams with an expired deadline, before the session closes: yamux
// v0.1.2's Stream.Read and write spin between the session's shutdown and
// the moment it force-closes their stream (hashicorp/yamux#176).
func (c *Conn) wakeStreams() {
	past := time.Unix(1, 0)
	c.streams.mu.Lock()
	c.streams.closed = true
	streams := c.streams.all
	c.streams.mu.Unlock()
	c.main.SetDeadline(past)
	for _, st := range streams {
		st.SetDeadline(past)
	}
}

// shrinkStreams lets go of the receive buffers of the connection's streams
// that hold no unread bytes (yamux's Stream.Shrink). yamux keeps a
// stream's buffer for the stream's life, at the size of the most bytes
// that ever waited in it unread: up to the window (streamWindow) and, as a
// bytes.Buffer grows, twice that. The keepalive calls it each time its
// timer fires, so that a connection that carried a burst of large messages
// does not hold their buffers for ever; a stream still in use allocates a
// new one with its next yamux frame.
//
// Shrink waits for the stream's receive lock, which yamux's receive loop
// holds while it reads a data frame's body from the socket: it can block
// until the peer sends the rest, or the session ends. So the streams are
// shrunk outside c.streams.mu, which other goroutines must not wait behind.
func (c *Conn) shrinkStreams() {
	c.main.Shrink()
	c.streams.mu.Lock()
	all := slices.Clone(c.streams.all)
	c.streams.mu.Unlock()
	for _, st := range all {
		st.Shrink()
	}
}

// sendFrame sends an encoded message: large ones on a message stream, unless
// they hold a reference to one of the receiver's objects, whose order
// relative to that reference's release must be kept.
func (c *Conn) sendFrame(ctx context.Context, e *encoder, isCall bool) error {
	var err error
	switch {
	case c.onMessageStream(e) && isCall && c.out.shut():
		// Like a call on the main stream (sender.sendCall), a large call
		// never follows the answer to the peer's going-away notice.
		err = errCallAfterGoingAway
	case c.onMessageStream(e):
		err = c.sendOnMsgStream(ctx, e)
	case isCall:
		err = c.out.sendCall(ctx, e.frame(), c.othersWriting())
	default:
		err = c.out.send(ctx, e.frame(), c.othersWriting())
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
	return e.bodyLen()+cborx.FramePrefix > c.opts.msgStreamThreshold && !e.homecoming
}

// sendOnMsgStream writes a large message on one of this side's message
// streams, its segments straight from their slices (encoder.writeFrame).
func (c *Conn) sendOnMsgStream(ctx context.Context, e *encoder) error {
	st, err := c.msgStream(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(c.opts.writeTimeout)
	st.SetWriteDeadline(deadline)
	interrupted := func() bool { return false }
	if ctx.Done() != nil {
		// The caller's context bounds the write too: when it ends, an
		// expired deadline ends a write waiting for the peer's window.
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(fired)
			st.SetWriteDeadline(time.Now())
		})
		interrupted = func() bool {
			if stop() {
				return false
			}
			<-fired // the stream's deadline is not touched after this
			return true
		}
	}
	written, err := e.writeFrame(st, c.co, st.StreamID())
	if interrupted() && err != nil && isTimeout(err) && time.Now().Before(deadline) {
		// The caller gave up with part of the frame written. The rest is
		// copied (the segments are the caller's) and finished in the
		// background, under the write timeout, so that the stream never
		// holds half a frame; the call counts as sent, and the caller
		// cancels it as it would any call in flight.
		return c.finishFrame(st, e.frameRest(written), deadline)
	}
	if err != nil {
		// The stream may hold part of the frame now: it cannot be used again.
		if isTimeout(err) {
			err = ErrWriteTimeout
		}
		c.writeFailed(err)
		return c.linkErr(true, err)
	}
	c.streams.idle <- st // never blocks: there are never more streams than room
	return nil
}

// finishFrame writes rest, the end of a frame whose caller gave up while
// it was being written, on st in a goroutine of the connection's (the
// teardown waits for it, and wakeStreams ends its write), and then gives st
// back. A write that fails fails the connection, as in sendOnMsgStream.
func (c *Conn) finishFrame(st *yamux.Stream, rest []byte, deadline time.Time) error {
	c.streams.mu.Lock()
	if c.streams.closed {
		c.streams.mu.Unlock()
		return c.linkErr(true, c.deadErr())
	}
	c.streams.finishing.Add(1)
	// Under mu: wakeStreams's expired deadline, set after closed, wins.
	st.SetWriteDeadline(deadline)
	c.streams.mu.Unlock()
	go func() {
		defer c.streams.finishing.Done()
		if err := writeAll(st, rest); err != nil {
			if isTimeout(err) {
				err = ErrWriteTimeout
			}
			c.writeFailed(err)
			return
		}
		c.streams.idle <- st
	}()
	return nil
}

// msgStream takes an idle message stream, opens one if fewer than
// maxMsgStreams exist, or waits for one to be free.
func (c *Conn) msgStream(ctx context.Context) (*yamux.Stream, error) {
	select {
	case st := <-c.streams.idle:
		return st, nil
	default:
	}
	for n := c.streams.opened.Load(); n < maxMsgStreams; n = c.streams.opened.Load() {
		if c.streams.opened.CompareAndSwap(n, n+1) {
			return c.openMsgStream()
		}
	}
	select {
	case st := <-c.streams.idle:
		return st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.dying:
		return nil, c.deadErr()
	}
}

// openMsgStream opens one more message stream of this side's.
func (c *Conn) openMsgStream() (*yamux.Stream, error) {
	st, err := c.sess.OpenStream()
	if err != nil {
		c.fail(sessionCause(err))
		return nil, c.deadErr()
	}
	if !c.streams.track(st) {
		st.Close()
		return nil, c.deadErr()
	}
	return st, nil
}

// Frames on a message stream are read into a buffer of their own, which
// the message's values may keep: a large byte string decodes to a slice
// of it (see decoder.alias) rather than to a copy. A buffer that a value
// kept is never reused, and the garbage collector frees it once no value
// points into it; one that none kept is reused for the stream's next
// frame, as long as it is no larger than wholeFrameLimit.
const (
	// msgHeadSize is what msgReader reads ahead to find a frame's length.
	msgHeadSize = 64
	// wholeFrameLimit is the largest frame whose buffer is allocated whole
	// as soon as its length arrives: a yamux window (256 KiB), which the
	// peer can make this side buffer anyway. A larger frame's buffer is
	// allocated whole once a quarter of it has arrived, so that a peer that
	// declares a large frame and sends little costs little.
	wholeFrameLimit = 256 << 10
)

// msgReader reads the length-prefixed frames of one message stream
// (docs/protocol.md §2, §4), each into a new buffer. The length is
// checked against the maximum before any of the body is read. Unlike
// cborx.FrameReader it has no read buffer: the body goes from yamux's
// stream buffer straight into the frame's own buffer, its only copy.
type msgReader struct {
	r      io.Reader
	max    int
	head   [msgHeadSize]byte // bytes read ahead of the current frame
	lo, hi int               // head[lo:hi] is what is left of them
	spare  []byte            // a body nothing kept, for the next frame
}

// ownedBody is what the receiver of an owned body says of it: kept, that
// a decoded value points into it.
type ownedBody struct{ kept bool }

// reuse takes back body, which no value points into, for a later frame:
// this stream's next one, or, above wholeFrameLimit, any stream's.
func (m *msgReader) reuse(body []byte) {
	if cap(body) <= wholeFrameLimit {
		m.spare = body[:0]
		return
	}
	putBig(body)
}

// Frames larger than wholeFrameLimit that no value kept go back to a pool
// shared by all connections (bigFrames), one per power-of-two class of
// sizes, so that a flow of large calls whose results are copied out (a
// reply variable reused across calls) reads each into a buffer that is
// already there: allocating a fresh one per frame had the runtime clear it,
// and later hand its pages back to the OS, which together cost a third of
// the CPU of a 1 MiB echo.
const (
	// bigMinShift is the first class's upper bound, as a power of two:
	// (256 KiB, 512 KiB].
	bigMinShift = 19
	// bigClasses is the number of classes: up to 32 MiB.
	bigClasses = 7
	// bigRound is what a pooled buffer's capacity is rounded up to, so that
	// frames of about the same size (a value and a few bytes of envelope)
	// fit each other's buffers.
	bigRound = 64 << 10
)

// bigFrames holds the pooled buffers, each as a *[]byte.
var bigFrames [bigClasses]sync.Pool

// bigClass returns the pool of a frame of n > wholeFrameLimit bytes, or nil
// for one too large to pool.
func bigClass(n int) *sync.Pool {
	c := bits.Len(uint(n-1)) - bigMinShift
	if c < 0 || c >= bigClasses {
		return nil
	}
	return &bigFrames[c]
}

// getBig returns a pooled buffer of n bytes, or nil if its class has none
// large enough. Its old contents are overwritten before anyone sees them:
// the caller reads the whole frame into it.
func getBig(n int) []byte {
	pool := bigClass(n)
	if pool == nil {
		return nil
	}
	p, _ := pool.Get().(*[]byte)
	if p == nil || cap(*p) < n {
		return nil // a smaller buffer of the class is dropped, not kept for later
	}
	return (*p)[:n]
}

// putBig pools buf, a frame's buffer that no value points into.
func putBig(buf []byte) {
	if pool := bigClass(cap(buf)); pool != nil {
		buf = buf[:0]
		pool.Put(&buf)
	}
}

// take returns a buffer of n bytes: the spare one if it is large enough.
func (m *msgReader) take(n int) []byte {
	if cap(m.spare) >= n {
		buf := m.spare[:n]
		m.spare = nil
		return buf
	}
	return make([]byte, n)
}

// newMsgReader returns a msgReader reading r with the given maximum body
// size.
func newMsgReader(r io.Reader, max int) *msgReader { return &msgReader{r: r, max: max} }

// next returns the next frame's body, in a buffer that belongs to the
// caller. A clean end of stream between frames returns io.EOF; an end
// inside a frame returns io.ErrUnexpectedEOF.
func (m *msgReader) next() ([]byte, error) {
	n, err := m.frameLen()
	if err != nil {
		return nil, err
	}
	return m.body(n)
}

// frameLen reads the next frame's length and checks it; the caller then
// reads the body, with body or with peek, skip and fillFrom.
func (m *msgReader) frameLen() (int, error) {
	n, err := m.length()
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("%w: empty frame", cborx.ErrSyntax)
	}
	if n > uint64(m.max) {
		return 0, fmt.Errorf("%w: %d bytes declared, limit %d", cborx.ErrFrameTooLarge, n, m.max)
	}
	return int(n), nil
}

// peek returns at least k bytes of the current frame's body without
// consuming them, reading ahead as needed: k must be no more than what is
// left of the frame, and at most msgHeadSize.
func (m *msgReader) peek(k int) ([]byte, error) {
	for m.hi-m.lo < k {
		if err := m.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF // inside a frame
			}
			return nil, err
		}
	}
	return m.head[m.lo:m.hi], nil
}

// skip consumes k bytes that peek returned.
func (m *msgReader) skip(k int) { m.lo += k }

// length reads a frame's uvarint length prefix, reading ahead as needed.
func (m *msgReader) length() (uint64, error) {
	for {
		n, k := binary.Uvarint(m.head[m.lo:m.hi])
		switch {
		case k < 0, k == 0 && m.hi-m.lo >= binary.MaxVarintLen64:
			// Ten bytes that do not end the length: it cannot fit, whatever follows.
			return 0, fmt.Errorf("%w: frame length overflows 64 bits", cborx.ErrSyntax)
		case k > 0:
			m.lo += k
			return n, nil
		}
		if err := m.fill(); err != nil {
			return 0, err
		}
	}
}

// fill reads more of the stream into head, after what is left in it.
func (m *msgReader) fill() error {
	had := m.hi - m.lo
	m.hi = copy(m.head[:], m.head[m.lo:m.hi])
	m.lo = 0
	k, err := m.r.Read(m.head[m.hi:])
	m.hi += k
	if k > 0 {
		return nil
	}
	if err == nil {
		return io.ErrNoProgress // yamux's Read waits for data: it never returns (0, nil)
	}
	if errors.Is(err, io.EOF) && had > 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

// body reads a body of n bytes into a buffer of its own: a pooled one
// (getBig), or a new one.
func (m *msgReader) body(n int) ([]byte, error) {
	first := n
	if n > wholeFrameLimit {
		if buf := getBig(n); buf != nil {
			// A buffer already held costs nothing more if the peer sends
			// less than it declared: read into it from the start.
			return buf, m.fillFrom(buf)
		}
		first = max(wholeFrameLimit, n/4)
	}
	buf := m.take(first)
	if err := m.fillFrom(buf); err != nil {
		return nil, err
	}
	if first == n {
		return buf, nil
	}
	// A quarter arrived: the peer is sending what it declared.
	whole := make([]byte, n, (n+bigRound-1)/bigRound*bigRound)
	copy(whole, buf)
	m.reuse(buf)
	if err := readFull(m.r, whole[first:]); err != nil {
		return nil, err
	}
	return whole, nil
}

// fillFrom fills buf with the frame's next bytes: first what was read
// ahead, then the rest straight from the stream.
func (m *msgReader) fillFrom(buf []byte) error {
	k := copy(buf, m.head[m.lo:m.hi])
	m.lo += k
	return readFull(m.r, buf[k:])
}

// fillCount is fillFrom that also says how many bytes it filled, for a
// read that may be interrupted (Conn.returnDirect).
func (m *msgReader) fillCount(buf []byte) (int, error) {
	k := copy(buf, m.head[m.lo:m.hi])
	m.lo += k
	n, err := io.ReadFull(m.r, buf[k:])
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return k + n, err
}

// discard reads the next n bytes of the frame and drops them, through the
// spare buffer.
func (m *msgReader) discard(n int) error {
	buf := m.take(min(n, 64<<10))
	defer func() { m.spare = buf[:0] }()
	for n > 0 {
		k := min(n, len(buf))
		if err := readFull(m.r, buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// readFull fills p from r; an end of stream is io.ErrUnexpectedEOF, since
// it cuts a frame short.
func readFull(r io.Reader, p []byte) error {
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// returnHeadMax is the most bytes a Return's head takes up to the content
// of a byte-string result: the array's head, the kind, a call id and the
// byte string's head (1 + 1 + 9 + 9).
const returnHeadMax = 20

// returnDirect reads a frame of n bytes that is a Return whose result is a
// byte string straight into the waiting caller's []byte reply, when the
// reply already has room for it (the reply variable of a caller that
// reuses it): the copy out of yamux's stream buffer is then the only one,
// and no frame buffer is filled first. For any other frame it consumes
// nothing and reports false. The result is what the decoder would have
// made (bytesDecoder fills a reply with room), but that a read failing
// half-way, or a caller giving up half-way, leaves the reply's bytes
// changed; the call then fails with the link's error or ctx.Err().
func (c *Conn) returnDirect(fr *msgReader, st *yamux.Stream, n int) (bool, error) {
	if n < aliasMin {
		return false, nil
	}
	head, err := fr.peek(returnHeadMax)
	if err != nil {
		return false, err
	}
	id, skip, ok := bytesReturn(head, n)
	if !ok {
		return false, nil
	}
	cl, dst := c.pending.takeBytes(id, n-skip, st)
	if cl == nil {
		return false, nil // decoded the usual way: the caller gave up, or its reply has no room
	}
	fr.skip(skip)
	k, err := fr.fillCount(dst)
	if cl.direct.end(c.streams.undoDeadline) {
		// The caller gave up (Conn.abandon) and waits only for this: it
		// must not find its reply written to once it returns.
		cl.err = errGaveUp
		cl.done <- struct{}{}
		if err != nil && isTimeout(err) {
			err = fr.discard(len(dst) - k) // the interruption's, not the link's
		}
		return true, err
	}
	if err != nil {
		// The call is out of the pending table, where teardown would fail
		// it: fail it here, with the error the connection ends with.
		c.msgStreamFailed(err)
		<-c.dying
		le := c.linkErr(true, c.cause)
		le.method = cl.method
		cl.err = le
		cl.done <- struct{}{}
		return true, err
	}
	*cl.reply.(*[]byte) = dst
	cl.done <- struct{}{}
	return true, nil
}

// errGaveUp is the result of a call whose caller gave up while its result
// was read into its reply (Conn.returnDirect); the caller returns ctx.Err().
var errGaveUp = errors.New("tether: the caller gave up during its result")

// directRead is a call's hold on the stream its result is read from
// straight into its reply (Conn.returnDirect). Its mutex orders a caller's
// interruption (a read deadline in the past) before the reader undoes it,
// so that the stream's next read never meets a stale deadline.
type directRead struct {
	mu     sync.Mutex
	st     *yamux.Stream // nil when no such read is under way
	gaveUp bool
}

// begin marks the read under way on st.
func (d *directRead) begin(st *yamux.Stream) {
	d.mu.Lock()
	d.st, d.gaveUp = st, false
	d.mu.Unlock()
}

// interrupt is the caller giving up: a read under way returns as soon as
// it would wait for more bytes, instead of when the frame ends, which a
// stalled peer could put off for ever.
func (d *directRead) interrupt() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st != nil {
		d.gaveUp = true
		d.st.SetReadDeadline(time.Unix(1, 0))
	}
}

// end ends the read and reports whether the caller gave up; if so it
// clears the deadline interrupt set, through undo.
func (d *directRead) end(undo func(*yamux.Stream)) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	gaveUp := d.gaveUp
	if gaveUp {
		undo(d.st)
	}
	d.st, d.gaveUp = nil, false
	return gaveUp
}

// undoDeadline clears st's read deadline, unless the connection is closing:
// then the deadline is wakeStreams', which must stay.
func (s *msgStreams) undoDeadline(st *yamux.Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		st.SetReadDeadline(time.Time{})
	}
}

// bytesReturn reads head, the start of a frame of n bytes, as a Return
// [4, callID, result] whose result is a byte string that ends the frame:
// ok, the call id, and where the byte string's content starts. Anything
// else, well formed or not, is not ok and is left to the usual path, which
// validates it.
func bytesReturn(head []byte, n int) (id uint64, skip int, ok bool) {
	r := cborx.NewReader(head)
	if k, err := r.ReadArray(); err != nil || k != 3 {
		return 0, 0, false
	}
	if kind, err := r.ReadUint(); err != nil || msgKind(kind) != msgReturn {
		return 0, 0, false
	}
	id, err := r.ReadUint()
	if err != nil {
		return 0, 0, false
	}
	h, err := r.ReadHead()
	if err != nil || h.Major != cborx.MajorBytes || h.Arg != uint64(n-r.Offset()) {
		return 0, 0, false
	}
	return id, r.Offset(), true
}
