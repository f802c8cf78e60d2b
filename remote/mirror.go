package remote

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/remoteable"
)

var cacheMirrorType = reflect.TypeFor[remoteable.CacheMirror]()

// mirrorReply reports whether reply is a pointer to a mirror pointer
// (**cache.Mirror[K, V], say), returning the mirror's type.
func mirrorReply(reply any) (reflect.Type, bool) {
	t := reflect.TypeOf(reply)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Pointer {
		return nil, false
	}
	mt := t.Elem()
	return mt, mt.Implements(cacheMirrorType)
}

// callMirror makes a call whose result is a Cacheable received as a mirror:
// the mirror subscribes through a Ref derived from this call, so that it
// resubscribes by itself after an outage.
func (r *Ref) callMirror(ctx context.Context, t *broker.Ref, method string, reply any, mt reflect.Type, args []any) error {
	var b *broker.Ref
	if err := t.Call(ctx, method, &b, args...); err != nil {
		return err
	}
	out := reflect.ValueOf(reply).Elem()
	if b == nil {
		out.SetZero()
		return nil
	}
	src := r.derive(method, args, b)
	m := out // a mirror made with options (cache.NewMirror) is attached in place
	if m.IsNil() {
		m = reflect.New(mt.Elem())
	}
	if err := m.Interface().(remoteable.CacheMirror).AttachCache(ctx, src); err != nil {
		src.Release()
		return afterRun(err) // the call ran: see Ref.Call
	}
	out.Set(m)
	return nil
}

// relayMirror is the one mirror a relay keeps of an upstream model, however
// many downstream mirrors subscribe to it. It lives while some downstream
// connection holds its feed.
type relayMirror struct {
	fl    *feed.Follower
	src   *Ref
	ready chan struct{} // closed once attached (or failed)
	err   error
	given time.Time // when it was last handed out; guarded by relayMirrors.mu
	// keep is when the resume window ends that began when its last holder's
	// connection died; guarded by relayMirrors.mu.
	keep time.Time
	// checkAt is when the one pending drop check runs (zero: none), so
	// that idle events do not pile up timers; guarded by relayMirrors.mu.
	checkAt time.Time
}

// CacheFeed makes the relay mirror a Cacheable: downstream it travels as
// a model of its own, with the upstream model's epoch and versions.
func (m *relayMirror) CacheFeed() any { return m.fl.Feed().Publisher() }

// relayMirrors is a client's table of relay mirrors.
type relayMirrors struct {
	mu   sync.Mutex
	all  map[*relayMirror]struct{}
	done bool
}

// mirrorFor returns the relay mirror of the upstream model b refers to,
// making it (one subscription upstream) if there is none yet.
func (r *Ref) mirrorFor(ctx context.Context, method string, args []any, b *broker.Ref) (any, error) {
	rm := &r.cl.mirrors
	rm.mu.Lock()
	if rm.done {
		rm.mu.Unlock()
		b.Release()
		return nil, broker.ErrClosed
	}
	if m := rm.findLocked(b); m != nil {
		m.given = time.Now()
		rm.mu.Unlock()
		b.Release()
		return m.await(ctx)
	}
	m := rm.addLocked(r.derive(method, args, b), r.cl.opts.relayLog)
	rm.mu.Unlock()
	return rm.attach(ctx, m)
}

// findLocked returns the relay mirror of the model b refers to, or nil;
// rm.mu is held.
func (rm *relayMirrors) findLocked(b *broker.Ref) *relayMirror {
	for m := range rm.all {
		if m.src.holds(b) {
			return m
		}
	}
	return nil
}

// await waits until m is attached (by the call that made it) and returns
// it, or the error its attachment failed with.
func (m *relayMirror) await(ctx context.Context) (any, error) {
	select {
	case <-m.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if m.err != nil {
		return nil, m.err
	}
	return m, nil
}

// addLocked makes a relay mirror following src, not yet attached, and
// enters it in the table, so that concurrent calls for the same model wait
// for it instead of subscribing again. Its log keeps logSize changes
// (WithRelayLogSize). rm.mu is held.
func (rm *relayMirrors) addLocked(src *Ref, logSize int) *relayMirror {
	m := &relayMirror{src: src, ready: make(chan struct{})}
	m.fl = feed.NewFollower(src, nil, feed.Options{LogSize: logSize, WaitLink: WaitForLink, Owner: m,
		// A relay mirror that lost its model upstream goes: its
		// downstream mirrors have been told, and a later call for the
		// model makes a new one.
		OnLost: func(error) { rm.drop(m, false) }})
	if rm.all == nil {
		rm.all = map[*relayMirror]struct{}{}
	}
	rm.all[m] = struct{}{}
	return m
}

// attach subscribes the new relay mirror m upstream and wakes those waiting
// for it; from then on m is dropped once no downstream connection holds it.
func (rm *relayMirrors) attach(ctx context.Context, m *relayMirror) (any, error) {
	m.fl.Feed().Publisher().OnIdle(func(lost bool) { rm.idle(m, lost) })
	m.err = m.fl.Attach(ctx)
	close(m.ready)
	if m.err != nil {
		rm.drop(m, false)
		return nil, m.err
	}
	// A result that never reaches a downstream peer (its caller gave up)
	// must not keep the subscription upstream.
	rm.dropLater(m)
	return m, nil
}

// idle schedules the drop of m, which no downstream connection holds any
// more: after the resume window when a holder's connection died (lost),
// after the grace period when every holder released it.
func (rm *relayMirrors) idle(m *relayMirror, lost bool) {
	rm.mu.Lock()
	if lost {
		// A holder's connection died: it may come back with the
		// feed's token, and find the mirror where it was.
		m.keep = time.Now().Add(resumeWindow)
	} else {
		m.keep = time.Time{} // every holder left by releasing it
	}
	rm.mu.Unlock()
	if lost {
		rm.dropAfter(m, resumeWindow)
	} else {
		rm.dropLater(m)
	}
}

// idleGrace is how long a relay mirror no downstream connection holds is
// kept: long enough for one just handed out to be sent, so that a mirror
// is never closed under a peer that is receiving it.
var idleGrace = time.Second

// resumeWindow is how long a relay mirror is kept when the last
// downstream connection holding it died rather than released it: the
// downstream mirrors resume it by its token when their link comes back
// (docs/protocol.md §11.11), and get the changes they missed from its log.
var resumeWindow = time.Minute

// dropLater closes m after idleGrace if no downstream connection holds it
// then.
func (rm *relayMirrors) dropLater(m *relayMirror) { rm.dropAfter(m, idleGrace) }

// dropAfter closes m after d if no downstream connection holds it then.
// A relay mirror has at most one pending check: one due no later than d
// looks again itself (and reschedules), so a later one is not added.
func (rm *relayMirrors) dropAfter(m *relayMirror, d time.Duration) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	rm.dropAfterLocked(m, d)
}

// dropAfterLocked is dropAfter with rm.mu held.
func (rm *relayMirrors) dropAfterLocked(m *relayMirror, d time.Duration) {
	at := time.Now().Add(d)
	if !m.checkAt.IsZero() && !m.checkAt.After(at) {
		return
	}
	m.checkAt = at
	pendingDropChecks.Add(1)
	time.AfterFunc(d, func() {
		defer pendingDropChecks.Add(-1)
		rm.mu.Lock()
		current := m.checkAt.Equal(at)
		if current {
			m.checkAt = time.Time{}
		}
		rm.mu.Unlock()
		if current { // not superseded by an earlier check
			rm.drop(m, true)
		}
	})
}

// pendingDropChecks counts the relay mirrors' drop timers not yet fired
// (for tests).
var pendingDropChecks atomic.Int64

// drop closes a relay mirror; when onlyIdle is set, only if no downstream
// connection holds it.
func (rm *relayMirrors) drop(m *relayMirror, onlyIdle bool) {
	rm.mu.Lock()
	_, ok := rm.all[m]
	if ok && onlyIdle {
		ok = !rm.sparedLocked(m)
	}
	if ok {
		delete(rm.all, m)
	}
	rm.mu.Unlock()
	if ok {
		m.fl.Close()
	}
}

// sparedLocked reports whether an idle check must keep m after all, and
// schedules the next check when m may go later; rm.mu is held.
func (rm *relayMirrors) sparedLocked(m *relayMirror) bool {
	switch {
	case m.fl.Feed().Publisher().Holders() > 0:
		return true
	case time.Since(m.given) < idleGrace:
		// Handed out again since it went idle: look again later.
		rm.dropAfterLocked(m, idleGrace)
		return true
	case time.Now().Before(m.keep):
		// Within a resume window.
		rm.dropAfterLocked(m, time.Until(m.keep))
		return true
	}
	return false
}

// closeAll closes every relay mirror (the client is closing).
func (rm *relayMirrors) closeAll() {
	rm.mu.Lock()
	all := rm.all
	rm.all, rm.done = nil, true
	rm.mu.Unlock()
	for m := range all {
		m.fl.Close()
	}
}

// holds reports whether r's current target denotes the same object as b.
func (r *Ref) holds(b *broker.Ref) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target != nil && r.target.Same(b)
}
