package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// This file holds a server's drain (Server.Shutdown), the going-away
// notice it gives each peer and the refusal of the calls that come after
// it, and the built-in health call (docs/protocol.md §6, "Going away" and
// "The health method").

// ErrGoingAway reports a server that is shutting down (Server.Shutdown).
// A connection whose peer said it is going away ends with an error
// matching it (Conn.Err), and a call the draining server refused fails
// with an error matching it: a *RemoteError whose text names the method,
// and which says that the call did not run, so it is safe to make again
// (a remote.Ref does so by itself on the client's next link). CodeOf
// reports Unavailable for both.
var ErrGoingAway = NewError(Unavailable, errors.New("tether: server is shutting down"))

func init() { remoteable.RegisterError("tether.going-away", ErrGoingAway) }

// GoingAwayMethod is the built-in call on a peer's root (reference 0)
// with which a draining server tells the peer that it is going away. A
// peer that knows it answers with a null result and stops sending new
// calls there; one that does not answers with a Fail (an unknown method,
// or no root), which the server drops: the notice breaks no older peer.
const GoingAwayMethod = "tether.going-away"

// HealthMethod is the built-in call on a server's root (reference 0) that
// every server answers, whatever its root, with a HealthReport: see Health.
const HealthMethod = "tether.health"

// The statuses a HealthReport gives.
const (
	// StatusServing: the server accepts connections and runs calls.
	StatusServing = "serving"
	// StatusDraining: the server is shutting down (Server.Shutdown); it
	// refuses new calls with ErrGoingAway and closes once the running ones
	// are done.
	StatusDraining = "draining"
)

// HealthReport is what a server says of itself when asked (Health).
type HealthReport struct {
	// Status is StatusServing or StatusDraining.
	Status string `cbor:"status" json:"status"`
	// Name is the name the server announces (WithName).
	Name string `cbor:"name" json:"name"`
	// Uptime is how long ago the server was made (NewServer).
	Uptime time.Duration `cbor:"uptime" json:"uptime"`
	// Conns is how many connections the server has, the asker's included.
	Conns int `cbor:"conns" json:"conns"`
}

// Health asks the server at the far end of conn how it is: a relay
// answers for itself, not for its upstream. It takes no registration: every
// Server answers it, while it serves and while it drains. A dialer's
// connection asked by the server's side answers ErrUnknownMethod. With a
// remote.Client, pass cl.Conn(): a nil conn (the client is not connected)
// fails with ErrDeadReference.
func Health(ctx context.Context, conn *Conn) (HealthReport, error) {
	var h HealthReport
	if conn == nil {
		return h, fmt.Errorf("%w: no connection to ask for its health", ErrDeadReference)
	}
	err := conn.Root().Call(ctx, HealthMethod, &h)
	return h, err
}

// Shutdown drains the server: it stops accepting (closes the listeners,
// and Serve returns ErrServerClosed), tells every peer that the server is
// going away, refuses the calls that arrive after that with an error
// matching ErrGoingAway (they did not run: a remote.Client's references
// make them again on the next link), lets the running calls finish and
// their results reach their callers, and then closes every connection as
// Close does. Handlers keep their contexts meanwhile, so the callbacks
// they make to their callers go on too, and so do the calls the peer
// makes from inside such a callback with the callback's context: they
// carry the id of the call they are nested in, and are admitted. A call
// the peer makes from inside a callback with another context is new, and
// refused. Only a peer's broker.Conn nests calls this way: a remote.Client
// leaves the draining link when it hears the notice, and a relay does not
// pass the nesting on, so their calls from inside a callback fail during a
// drain (remote.ErrDisconnected).
//
// When ctx ends first, the calls still running are cut (their callers get
// ErrConnectionLost) and Shutdown returns ctx's error wrapped. Close during
// Shutdown cuts at once, and Shutdown then returns an error matching
// ErrServerClosed if calls were running. Shutdown after Close does nothing
// and returns nil; like Close, it must not be called from a handler.
func (s *Server) Shutdown(ctx context.Context) error {
	conns, first, ok, lnErr := s.beginDrain()
	if !ok {
		return s.Close() // closed already: wait for Close to be done
	}
	heard := make([]<-chan struct{}, len(conns))
	if first { // a second Shutdown only waits, as the first does
		s.opts.logger.Info("tether: server draining", "conns", len(conns))
		for i, c := range conns {
			heard[i] = c.goAway()
		}
	}
	var cut error
	for i, c := range conns {
		if cut = c.awaitAnswered(ctx, s.ctx.Done(), heard[i]); cut != nil {
			break
		}
		if s.ctx.Err() != nil { // Close came
			cut = s.cutByClose()
			break
		}
	}
	if cut == nil {
		s.awaitHandshakes(ctx)
	}
	err := s.Close()
	if cut != nil {
		return fmt.Errorf("tether: shutdown cut calls that were still running: %w", cut)
	}
	return errors.Join(lnErr, err)
}

// beginDrain marks the server draining and closes its listeners; it
// returns the connections to drain, whether this is the first Shutdown,
// and false for ok when the server is closed already.
func (s *Server) beginDrain() (conns []*Conn, first, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, false, nil
	}
	first = !s.draining
	s.draining = true
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	conns = make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns, first, true, errors.Join(errs...)
}

// awaitHandshakes waits, bounded by ctx and by Close, for Serve's
// handshakes in progress to end, so that Close does not cut one whose
// dialer has its Welcome already: ServeConn tells that dialer the server is
// going away instead. Handshakes are short and bounded by their timeout,
// and a drain is rare: a poll does.
func (s *Server) awaitHandshakes(ctx context.Context) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := s.handshakes
		s.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// goAway tells the peer that this side is going away, then makes the
// connection refuse the peer's new calls. It returns a channel that
// receives when the peer has answered the notice (or the connection
// ended), nil when the connection has ended already.
func (c *Conn) goAway() <-chan struct{} {
	var heard chan struct{}
	// The notice is queued and draining set under running.mu, as
	// startCall's check is, so that a call either counted itself in
	// answering before, and awaitAnswered waits for it, or is refused; and
	// a call the peer sent after reading the notice is refused, since
	// startCall cannot look before draining is set. Draining is set after
	// the notice is queued, so that the notice reaches the peer before any
	// refusal (both go through the sender, in order): a peer that reads a
	// refusal knows already that the connection is going away. post never
	// blocks.
	c.running.mu.Lock()
	defer c.running.mu.Unlock()
	cl := newCall(context.Background(), GoingAwayMethod, nil)
	if id, ok := c.pending.add(cl); ok {
		heard = cl.done
		e := getEncoder(c)
		e.buf = appendCall(e.buf, callHead{id: id, method: GoingAwayMethod})
		c.out.post(e.frame())
		putEncoder(e)
	}
	c.draining.Store(true)
	return heard
}

// awaitAnswered waits until the peer has answered the going-away notice
// (heard), then until every call of the peer's that c started has been
// answered and the answers written, or until the connection ends. It
// returns ctx's error, or nil when stop (Close) comes first.
//
// The peer's answer comes first: the peer's calls sent before it read the
// notice are then all here, counted in answering or refused (and a lasting
// client sends no more after it), so none arrives after the close.
func (c *Conn) awaitAnswered(ctx context.Context, stop, heard <-chan struct{}) error {
	if heard != nil {
		select {
		case <-heard:
		case <-c.dying:
			return nil
		case <-ctx.Done():
			// A peer that never answers the notice is cut off, but that
			// cuts no call unless some are running.
			if c.answering.Load() == 0 {
				return nil
			}
			return ctx.Err()
		case <-stop:
			return nil // Close came: Shutdown asks it what it cut
		}
	}
	for c.answering.Load() > 0 {
		select {
		case <-c.quiet:
		case <-c.dying:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return nil // Close came: Shutdown asks it what it cut
		}
	}
	if err := c.out.flush(ctx, stop); err != nil && !errors.Is(err, ErrServerClosed) {
		return err
	}
	return nil
}

// cutByClose is what a drain cut short by Close reports: ErrServerClosed
// if Close found calls of peers unanswered, else nil (Close came once all
// were answered, from another Shutdown, say).
func (s *Server) cutByClose() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cut {
		return ErrServerClosed
	}
	return nil
}

// answered counts a call of the peer's as answered; the last one while the
// connection drains wakes awaitAnswered.
func (c *Conn) answered() {
	if c.answering.Add(-1) == 0 && c.draining.Load() {
		select {
		case c.quiet <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// sayGoingAway tells the peer of a connection whose handshake ended after
// the drain began, and which is closed at once, why: a Goodbye with
// ErrGoingAway (best effort, as for a protocol violation).
func (c *Conn) sayGoingAway() {
	e := getEncoder(c)
	if encodeGoodbye(e, fmt.Errorf("%w: the server began to drain during the handshake", ErrGoingAway)) == nil {
		c.out.tryFinal(e.frame(), 200*time.Millisecond)
	}
	putEncoder(e)
}

// goingAwayRefusal is the error of a call that arrived after the connection
// began to drain.
func goingAwayRefusal(method string) error {
	return fmt.Errorf("%w: %q did not run; call again, a remote.Client reconnects by itself", ErrGoingAway, method)
}

// peerGoingAway handles the peer's going-away notice: the connection
// stays up for the calls in flight, and GoingAway is closed so that a
// lasting client dials again. The notice is answered with a null result.
func (c *Conn) peerGoingAway(id uint64) {
	// Said before the answer is queued: the peer may close as soon as it
	// has the answer, and the end of the link must then be reported as
	// the peer going away (goneAway), even if this goroutine has not yet
	// closed away below.
	c.awaySaid.Store(true)
	e := getEncoder(c)
	e.buf = cborx.AppendNull(appendReturnHead(e.buf, id))
	// The answer tells the draining server that no call of this side
	// follows it, and postShutCalls makes it so: a call that was about to
	// be sent (a caller holding a reference on this connection from
	// before the notice) fails with ErrGoingAway instead, unsent, rather
	// than reach a server that may have closed by then. The answer is
	// queued before GoingAway closes, so that whatever this side sends
	// in reaction to GoingAway (a remote.Ref releasing its target here
	// once it has one on the next link) comes after it: a call queued
	// before the answer then reaches the peer before that release.
	c.out.postShutCalls(e.frame())
	putEncoder(e)
	c.awayOnce.Do(func() {
		c.opts.logger.Info("tether: peer is going away", "peer", c.peer.Name)
		close(c.away)
	})
}

// errCallAfterGoingAway is what the sender returns for a call it did not
// send because the peer had said it is going away and this side had
// answered (see peerGoingAway); Conn.notSent names the method in it.
var errCallAfterGoingAway = fmt.Errorf("%w: the call was not sent, since the peer said it is going away", ErrGoingAway)

// GoingAway is closed when the peer has said that it is going away (its
// server drains, see Server.Shutdown). The connection stays up until the
// peer closes it, for the calls in flight; new calls on it fail at once
// with ErrGoingAway, without being sent (health excepted). It is never
// closed on a connection whose peer did not say so.
func (c *Conn) GoingAway() <-chan struct{} { return c.away }

// goneAway is cause, the reason the connection ended, made to match
// ErrGoingAway when the peer had said it was going away (unless this
// side closed it).
func (c *Conn) goneAway(cause error) error {
	if !c.awaySaid.Load() {
		return cause
	}
	if errors.Is(cause, ErrGoingAway) || errors.Is(cause, ErrClosed) {
		return cause
	}
	return &goingAway{cause: cause}
}

// goingAway is the end of a connection whose peer had said it was going
// away: it matches ErrGoingAway and its cause.
type goingAway struct{ cause error }

// Error says that the peer went away, and how the connection ended.
func (e *goingAway) Error() string {
	return fmt.Sprintf("%v: the peer said it was going away, then the connection ended (%s)", ErrGoingAway, bare(e.cause))
}

// Is reports that e matches ErrGoingAway.
func (e *goingAway) Is(target error) bool { return target == ErrGoingAway }

// Unwrap returns how the connection ended.
func (e *goingAway) Unwrap() error { return e.cause }

// startHealthCall starts a call of HealthMethod on a server's connection.
func (c *Conn) startHealthCall(in *callIn) error {
	if in.argc != 0 {
		return rejection{fmt.Errorf("%w: %s takes no arguments", ErrBadArguments, HealthMethod)}
	}
	t := &inCall{id: in.id, ex: &export{}, name: HealthMethod}
	t.cc.c = c
	t.ctx = &t.cc
	t.cc.deadline = deadlineOf(in.timeout)
	return c.startCall(t)
}

// health answers HealthMethod.
func (c *Conn) health() (o outcome) {
	s := c.srv
	s.mu.Lock()
	h := HealthReport{Status: StatusServing, Name: s.opts.name, Uptime: time.Since(s.started), Conns: len(s.conns)}
	if s.draining {
		h.Status = StatusDraining
	}
	s.mu.Unlock()
	o.generic = h
	return o
}
