package broker

import (
	"context"
	"errors"
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

	mu     sync.Mutex
	all    []*yamux.Stream // every message stream, the peer's and ours
	closed bool            // the connection is closing: no stream may be added
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

// sendFrame sends an encoded message: large ones on a message stream, unless
// they hold a reference to one of the receiver's objects, whose order
// relative to that reference's release must be kept.
func (c *Conn) sendFrame(ctx context.Context, e *encoder) error {
	frame := e.frame()
	var err error
	if c.onMessageStream(e) {
		err = c.sendOnMsgStream(ctx, frame)
	} else {
		err = c.out.send(ctx, frame, c.othersWriting())
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
// streams.
func (c *Conn) sendOnMsgStream(ctx context.Context, frame []byte) error {
	st, err := c.msgStream(ctx)
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
	c.streams.idle <- st // never blocks: there are never more streams than room
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
