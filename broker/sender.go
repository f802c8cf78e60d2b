package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"
)

// maxPending bounds the bytes waiting to be written on the main stream before
// callers that can wait (not the reader) are held back.
const maxPending = 1 << 20

// maxPosted bounds the bytes post may queue: answers the reader sends
// without waiting, for a peer that may not be reading them.
const maxPosted = 8 * maxPending

// deadlineWriter is the part of a yamux stream the sender uses.
type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(time.Time) error
}

// sender writes frames to the main stream. Frames from concurrent goroutines
// are batched: whoever finds the stream idle writes everything pending in one
// write, and frames that arrive meanwhile go out together in the next one.
// The first writer of a burst writes in its own goroutine (no hand-off at low
// load); if more piled up while it wrote, a drain goroutine takes over, so no
// caller is kept writing other callers' frames. The drain goroutine exists
// only while there is something to write: an idle connection has none.
//
// Exactly one goroutine owns the stream at a time (busy), which keeps frames
// in the order they were queued. A drain goroutine that was started but has
// not begun to write holds the ownership as a token (handover): a lone
// sender that comes first takes the token and writes itself, as if the
// stream had been idle, and the drain goroutine, finding no token, exits
// without writing.
type sender struct {
	w       deadlineWriter
	timeout time.Duration
	onError func(error) // called once with the first write error; must not block
	peer    string      // the peer's announced name, for the errors of a failed link
	addr    string      // the peer's address, for the same

	mu       sync.Mutex
	pend     []byte
	posted   int // bytes of pend that post queued (the rest came from send)
	spare    []byte
	busy     bool          // a goroutine owns the stream
	handover bool          // the owner is a drain goroutine yet to run: see sender
	room     chan struct{} // closed and replaced after a write, when someone waits
	waiting  int           // senders waiting for room
	deadline time.Time     // the write deadline last set on the stream
	corked   bool          // the reader has more frames to process: hold small writes
	// callsShut is set with the queueing of the answer to the peer's
	// going-away notice: no call may follow that answer (see postShutCalls).
	callsShut bool
	err       error
	quit      chan struct{}
	drains    sync.WaitGroup // the drain goroutine, while there is one
	drainFn   func()         // s.drain, bound once: go s.drain() would allocate a closure per start
	started   uint64         // drain goroutines started, for the benchmarks (drainsStarted)
}

// newSender returns a sender writing to w, each write bounded by timeout.
func newSender(w deadlineWriter, timeout time.Duration, onError func(error)) *sender {
	s := &sender{
		w: w, timeout: timeout, onError: onError,
		room: make(chan struct{}),
		quit: make(chan struct{}),
	}
	s.drainFn = s.drain
	return s
}

// send queues frame and, if the stream is idle and the caller is alone
// (!busyConn), writes it before returning. When other calls are in flight it
// leaves the write to a drain goroutine, which then carries several frames
// at once.
// It blocks only while more than maxPending bytes wait, bounded by ctx and by
// the sender's shutdown.
func (s *sender) send(ctx context.Context, frame []byte, busyConn bool) error {
	return s.queue(ctx, frame, busyConn, false)
}

// sendCall is send for a call's frame: it refuses the frame, with
// errCallAfterGoingAway, once the answer to the peer's going-away notice is
// queued (postShutCalls). The check and the queueing are under one hold of
// s.mu, so that no call ever follows that answer on the stream: the
// draining peer closes once it has answered what came before it.
func (s *sender) sendCall(ctx context.Context, frame []byte, busyConn bool) error {
	return s.queue(ctx, frame, busyConn, true)
}

// queue is send and sendCall: isCall says the frame is a call's.
func (s *sender) queue(ctx context.Context, frame []byte, busyConn, isCall bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.awaitRoom(ctx); err != nil {
		return err
	}
	if isCall && s.callsShut {
		return errCallAfterGoingAway
	}
	s.pend = append(s.pend, frame...)
	if s.holding() || (s.busy && (busyConn || !s.handover)) {
		return nil
	}
	if busyConn {
		s.busy = true
		s.startDrain()
		return nil
	}
	// The stream is idle, or waits for a drain goroutine to run (handover):
	// a lone caller writes at once rather than wait for it. A post (a
	// Release, say) followed by this call's frame then leaves in one write
	// from here, without waiting for the drain goroutine to be scheduled and
	// to grow its stack.
	s.busy, s.handover = true, false
	err := s.writeBatch()
	if err == nil && len(s.pend) > 0 {
		s.startDrain() // more arrived while we wrote: hand over
	} else {
		s.busy = false
	}
	if err != nil {
		// The write failed, but yamux may report a failure for bytes that
		// did go out: the frame may have been delivered.
		return &linkError{inFlight: true, cause: err, peer: s.peer, addr: s.addr}
	}
	return nil
}

// notSent reports a sender that failed before this frame was queued.
func (s *sender) notSent(err error) error {
	var le *linkError
	if errors.As(err, &le) {
		return &linkError{cause: le.cause, peer: le.peer, addr: le.addr}
	}
	return &linkError{cause: err, peer: s.peer, addr: s.addr}
}

// awaitRoom waits, with s.mu held (and released while it waits), until
// fewer than maxPending bytes wait to be written; it returns ctx's error,
// or the link's when the sender failed.
func (s *sender) awaitRoom(ctx context.Context) error {
	for s.err == nil && len(s.pend) >= maxPending {
		room := s.room
		s.waiting++
		s.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting--
			return ctx.Err()
		case <-s.quit:
		}
		s.mu.Lock()
		s.waiting--
	}
	if s.err != nil {
		return s.notSent(s.err)
	}
	return nil
}

// shut reports whether the answer to the peer's going-away notice is
// queued, after which no call may be sent (see postShutCalls).
func (s *sender) shut() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsShut
}

// postShutCalls posts frame, the answer to the peer's going-away notice,
// and refuses every call frame after it (sendCall): the peer counts on
// receiving none once it reads the answer (Conn.awaitAnswered).
func (s *sender) postShutCalls(frame []byte) {
	s.mu.Lock()
	s.callsShut = true
	s.mu.Unlock()
	s.post(frame)
}

// post queues frame without ever blocking; a drain goroutine writes it. The reader and
// GC cleanups use it: they must never wait on the network.
func (s *sender) post(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if s.posted+len(frame) > maxPosted {
		// Only a peer that does not read lets this much pile up: the
		// reader would otherwise queue answers for it without bound. (What
		// send queues is bounded by send itself, and not counted here.)
		s.err = fmt.Errorf("%w: %d bytes of answers unwritten", ErrWriteTimeout, s.posted)
		s.pend, s.posted = nil, 0
		s.onError(s.err)
		return
	}
	s.posted += len(frame)
	s.pend = append(s.pend, frame...)
	if !s.busy && !s.holding() {
		s.busy = true
		s.startDrain()
	}
}

// corkLimit bounds what a cork holds back.
const corkLimit = 64 << 10

// holding reports whether queued frames should wait for uncork. s.mu held.
func (s *sender) holding() bool { return s.corked && len(s.pend) < corkLimit }

// cork holds small writes back while the connection's reader still has
// frames buffered: the answers to a burst of requests then leave in one
// write instead of one each. uncork flushes what was held; the reader calls
// it before it waits for more input, so nothing is held for longer than the
// reader takes to work through what it already has.
func (s *sender) cork() {
	s.mu.Lock()
	s.corked = true
	s.mu.Unlock()
}

// uncork lets held frames go: see cork.
func (s *sender) uncork() {
	s.mu.Lock()
	s.corked = false
	if !s.busy && len(s.pend) > 0 && s.err == nil {
		s.busy = true
		s.startDrain()
	}
	s.mu.Unlock()
}

// startDrain starts the goroutine that writes what is pending, for a
// caller that just made itself the stream's owner (busy). s.mu held.
func (s *sender) startDrain() {
	if s.err != nil {
		// Stopped: nothing will be written, and stop's caller may be
		// waiting on drains already, which must not grow now.
		s.busy = false
		return
	}
	s.handover = true
	s.started++
	s.drains.Add(1)
	go s.drainFn()
}

// drainsStarted returns how many drain goroutines have been started.
func (s *sender) drainsStarted() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// writeBatch writes everything pending in one write. s.mu is held on entry
// and on return, released during the write.
func (s *sender) writeBatch() error {
	buf := s.pend
	s.pend, s.spare, s.posted = s.spare[:0], nil, 0
	s.mu.Unlock()
	err := s.write(buf)
	s.mu.Lock()
	if cap(buf) <= 4*maxPending {
		s.spare = buf[:0] // keep one buffer for the next batch, but not a huge one
	}
	if s.waiting > 0 {
		close(s.room)
		s.room = make(chan struct{})
	}
	if err != nil && s.err == nil {
		s.err = err
		s.pend = nil
		s.onError(err)
	}
	return err
}

// write writes buf under a deadline, in writes of at most maxStreamWrite
// (see writeAll). Setting a deadline costs an allocation
// in yamux, so it is renewed only when less than half the timeout is left:
// a write that cannot complete fails after between half and all of it.
func (s *sender) write(buf []byte) error {
	if now := time.Now(); s.deadline.Sub(now) < s.timeout/2 {
		s.deadline = now.Add(s.timeout)
		if err := s.w.SetWriteDeadline(s.deadline); err != nil {
			return err
		}
	}
	err := writeAll(s.w, buf)
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err)) {
		return ErrWriteTimeout
	}
	return err
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// drain writes what post queued and what piled up behind a send, until
// nothing is pending, and exits. It owns the stream (busy) from startDrain
// on.
func (s *sender) drain() {
	defer s.drains.Done()
	// Yield once before collecting: goroutines already runnable (callers
	// the reader just woke, handlers just done) append their frames first,
	// and one write carries them all. When nobody else is runnable this
	// costs nothing.
	runtime.Gosched()
	s.mu.Lock()
	if !s.handover {
		// A lone sender took the stream over and wrote what this goroutine
		// was started for (see sender); it owns the stream now, or has
		// given it back.
		s.mu.Unlock()
		return
	}
	s.handover = false
	for s.err == nil && len(s.pend) > 0 {
		if s.writeBatch() != nil {
			break
		}
	}
	// Under s.mu, as every append to pend is: a frame queued before this
	// point was written above, and one queued after it finds the stream
	// idle and writes it or starts a new drain. None is left behind.
	s.busy = false
	s.wake() // a flush (or a tryFinal) waits for the stream to be idle
	s.mu.Unlock()
}

// wake wakes the goroutines waiting for room or for the stream to be
// idle. s.mu held.
func (s *sender) wake() {
	if s.waiting > 0 {
		close(s.room)
		s.room = make(chan struct{})
	}
}

// flush waits until everything queued has been written (or the sender
// failed), bounded by ctx and by stop. Server.Shutdown calls it before it
// closes a drained connection, so that the last answers are not dropped.
func (s *sender) flush(ctx context.Context, stop <-chan struct{}) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.err == nil && (s.busy || len(s.pend) > 0) {
		room := s.room
		s.waiting++
		s.mu.Unlock()
		var err error
		select {
		case <-room:
		case <-s.quit:
		case <-ctx.Done():
			err = ctx.Err()
		case <-stop:
			err = ErrServerClosed
		}
		s.mu.Lock()
		s.waiting--
		if err != nil {
			return err
		}
	}
	return nil
}

// stop fails later sends with err and drops what is pending; a write in
// progress ends with the session (the caller closes it). wait then waits
// for the drain goroutine.
func (s *sender) stop(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.pend = nil
	}
	s.mu.Unlock()
	close(s.quit)
}

// wait returns once no drain goroutine runs. Call it after stop: no new one
// starts then.
func (s *sender) wait() { s.drains.Wait() }

// tryFinal writes a last frame (a goodbye) if the stream is idle, waiting at
// most d; otherwise it gives up. The connection is closing either way.
func (s *sender) tryFinal(frame []byte, d time.Duration) {
	deadline := time.Now().Add(d)
	s.mu.Lock()
	// A write in progress ends within the write timeout at worst; wait
	// for it (up to d) rather than give the goodbye up at once.
	for s.busy && s.err == nil {
		room := s.room
		s.waiting++
		s.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-room:
		case <-t.C:
		case <-s.quit:
		}
		t.Stop()
		s.mu.Lock()
		s.waiting--
		if time.Now().After(deadline) {
			break
		}
	}
	if s.busy || s.err != nil {
		s.mu.Unlock()
		return
	}
	s.busy = true
	s.mu.Unlock()
	s.deadline = deadline
	err := s.w.SetWriteDeadline(s.deadline)
	if err == nil {
		_, err = s.w.Write(frame)
	}
	s.mu.Lock()
	s.busy = false
	s.finalFailed(err)
	if s.waiting > 0 { // another tryFinal, or a send held back
		close(s.room)
		s.room = make(chan struct{})
	}
	if len(s.pend) > 0 && s.err == nil {
		s.busy = true
		s.startDrain()
	}
	s.mu.Unlock()
}

// finalFailed keeps the error of tryFinal's write, if any, so that nothing
// is written on the stream after it: yamux v0.1.2 can report the next write
// done before its header went out, and the one after rewrites that header
// while its send loop still copies it. The connection is closing and its
// caller reports why, so onError is not called. s.mu held.
func (s *sender) finalFailed(err error) {
	if err == nil || s.err != nil {
		return
	}
	if isTimeout(err) {
		err = ErrWriteTimeout
	}
	s.err, s.pend = err, nil
}
