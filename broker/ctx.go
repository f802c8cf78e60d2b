package broker

import (
	"context"
	"sync"
	"time"

	"github.com/tether-go/tether/internal/linkwait"
	"github.com/tether-go/tether/internal/typereg"
)

// connKey, forwardKey, opaqueKey, selfKey and callKey are context keys
// private to the broker.
type (
	connKey    struct{}
	forwardKey struct{}
	opaqueKey  struct{}
	selfKey    struct{}
	callKey    struct{}
)

// AsSelf returns a context, derived from a handler's ctx, for calls that
// this process makes on its own authority rather than for the handler's
// caller. By default a call made with a handler's context (or one derived
// from it) tells the callee whom it acts for — the handler's caller and
// whoever that caller acted for (remoteable.Peer.ForwardedFor) — so that a
// process never lends its identity silently; AsSelf is the explicit
// choice to lend it. The deadline, cancellation and values of ctx are kept.
func AsSelf(ctx context.Context) context.Context {
	return context.WithValue(ctx, selfKey{}, true)
}

// WithRawCopyables returns a context whose calls decode every Copyable in a
// reply of type *any as a *RawCopyable, registered here or not, so that a
// program showing values generically (a gateway, a debugger) sees them all
// in one shape, by their wire names.
func WithRawCopyables(ctx context.Context) context.Context {
	return context.WithValue(ctx, opaqueKey{}, true)
}

// Forwarded reports whether ctx belongs to a call this process is passing on
// for a peer through a proxy (a relay): the result goes back to that peer,
// and references in it are held for that peer only. Values this process
// does not know travel on opaquely in such a call.
func Forwarded(ctx context.Context) bool {
	return ctx.Value(forwardKey{}) != nil
}

// callCtx is the context a handler runs with: the caller's deadline, cancelled
// when the caller cancels, when the connection ends, or when the handler
// returns. Its Done channel and deadline timer are made only if a handler
// asks for Done, so a handler that never looks costs one allocation.
type callCtx struct {
	c        *Conn
	id       uint64 // the call's id on c (the caller's)
	deadline time.Time
	forward  bool
	peer     any      // a remoteable.Peer with ForwardedFor, for a call that has one
	hops     []string // for each ForwardedFor entry, where it was verified (see actingFor)
	// waitLink says the caller waits for links that are down: calls the
	// handler makes with its context wait too (see internal/linkwait).
	waitLink bool
	// md is the metadata the call arrived with (IncomingMetadata), nil
	// for none; it never changes once received.
	md Metadata

	mu     sync.Mutex
	done   chan struct{}
	err    error
	timer  *time.Timer
	byPeer bool // cancelled by the caller: the result is not wanted
}

var _ context.Context = (*callCtx)(nil)

func (x *callCtx) Deadline() (time.Time, bool) { return x.deadline, !x.deadline.IsZero() }

func (x *callCtx) Done() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.done == nil {
		x.done = make(chan struct{})
		x.checkDeadline()
		if x.err != nil {
			close(x.done)
		} else if !x.deadline.IsZero() {
			x.timer = time.AfterFunc(time.Until(x.deadline), func() { x.cancel(context.DeadlineExceeded, false) })
		}
	}
	return x.done
}

func (x *callCtx) Err() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err == nil && x.checkDeadline() && x.done != nil {
		close(x.done)
	}
	return x.err
}

// checkDeadline sets DeadlineExceeded once the deadline has passed. x.mu held.
func (x *callCtx) checkDeadline() bool {
	if x.err == nil && !x.deadline.IsZero() && !time.Now().Before(x.deadline) {
		x.err = context.DeadlineExceeded
		return true
	}
	return false
}

func (x *callCtx) Value(key any) any {
	switch key.(type) {
	case typereg.PeerKey:
		if x.peer != nil {
			return x.peer
		}
		return x.c.peerValue
	case connKey:
		return x.c
	case callKey:
		return x
	case forwardKey:
		if x.forward {
			return true
		}
	case linkwait.Key:
		if x.waitLink {
			return true
		}
	}
	return nil
}

// cancel ends the context with err; the first cancellation wins.
func (x *callCtx) cancel(err error, byPeer bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.err != nil {
		return
	}
	x.err, x.byPeer = err, byPeer
	if x.done != nil {
		close(x.done)
	}
	if x.timer != nil {
		x.timer.Stop()
	}
}

// cancelledByPeer reports whether the caller cancelled the call, so that
// its result is not wanted.
func (x *callCtx) cancelledByPeer() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byPeer
}
