package remote

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/holders"
	"github.com/tether-go/tether/internal/refhome"
	"github.com/tether-go/tether/internal/replay"
	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// Ref is a reference that outlives connections. It remembers how it was
// obtained and obtains its target again after a reconnect (see the package
// documentation). It is a remoteable.Caller, so broker.Call works on it, and
// it is Referenceable: a relay hands it out as a reference of its own.
// A Ref is safe for concurrent use.
type Ref struct {
	remoteable.Referenceable
	// exportCount counts the connections that hold r for their peers
	// (remoteable.ExportObserver, plumbing the broker calls). A wrapper a
	// relay made for a forwarded result is held only by the peer it went
	// to: when no connection exports it any more, its target is released
	// at once (holders.OnLast).
	exportCount
	// homing tells the broker r's target when r is sent to the connection
	// the target lives on, so that r goes home as the target at any depth
	// of a value (homeArgs does it for the arguments themselves, after
	// re-obtaining a stale target).
	homing

	cl *Client
	// How the target is obtained: by name from the registry, or by calling
	// method with args on parent.
	name   string
	parent *Ref
	method string
	args   []any

	sem    chan struct{} // serialises (re)resolution; a lock that respects ctx
	mu     sync.Mutex
	target *broker.Ref
	local  bool                // target is an object of this process: never re-obtained
	conn   *broker.Conn        // the connection target lives on
	desc   *broker.Description // the target's last known description (kept across reconnects)
	gone   error               // set when the target can never be obtained again
	failed string              // the last failure to obtain it again that was logged
	// feedToken is the capability of the feed r refers to, when r is a
	// mirror's source: after an outage r presents it to find the same feed
	// (captable.Method) before replaying the call that returned it.
	feedToken string
	// feedLost records that the feed's owner no longer knew the token: the
	// source can come back only by replaying the call.
	feedLost bool
}

// exportCount is embedded in Ref under this unexported name so that its
// Exported and Unexported methods, which only the broker calls, stay off
// Ref's documentation (see package holders).
type exportCount = holders.Count

// homing is embedded in Ref under this unexported name so that its
// RefHome method, which only the broker calls, stays off Ref's
// documentation (see package refhome).
type homing = refhome.Hook

// The feed package tells a mirror's source the token of the feed it
// follows (docs/protocol.md §11.11).
func init() {
	captable.SetSourceHook(func(src any, token string) {
		if r, ok := src.(*Ref); ok {
			r.mu.Lock()
			r.feedToken, r.feedLost = token, false
			r.mu.Unlock()
		}
	})
}

var (
	_ remoteable.Caller         = (*Ref)(nil)
	_ remoteable.ExportObserver = (*Ref)(nil)
)

// errLinkChanged is part of the error of a target that could not be
// obtained because its parent was meanwhile obtained on a newer link.
var errLinkChanged = errors.New("the link changed")

func newRef(cl *Client) *Ref {
	r := &Ref{cl: cl, sem: make(chan struct{}, 1)}
	refhome.Set(&r.homing, r.homeOn)
	refhome.SetGone(&r.homing, r.goneErr)
	return r
}

// goneErr says why r cannot be sent to a peer any more, or nil: sent,
// it would reach the peer as a reference whose every call fails. That is
// so once its client is closed (broker.ErrClosed, what a call on r fails
// with), or once its target can never be obtained again (r.gone). A
// reference to an object of this process keeps working, and travels.
func (r *Ref) goneErr() error {
	r.mu.Lock()
	local, gone := r.local, r.gone
	r.mu.Unlock()
	if local {
		return nil
	}
	if gone != nil {
		return gone
	}
	if r.cl.State() == Closed {
		return fmt.Errorf("%w: %v belongs to a remote.Client that was closed, so it cannot be sent: "+
			"every call on it would fail; obtain the object again through an open Client", broker.ErrClosed, r)
	}
	return nil
}

// String describes how the reference was obtained.
func (r *Ref) String() string {
	if r.parent != nil {
		return fmt.Sprintf("%v.%s(...)", r.parent, r.method)
	}
	return fmt.Sprintf("tether.remote(%s)", r.name)
}

// about names what r stands for, for a peer: a manager by its registry
// name, or the call on one that returned r.
func (r *Ref) about() string {
	if r.parent != nil {
		return fmt.Sprintf("%s from %s", r.method, r.parent.about())
	}
	return strconv.Quote(r.name)
}

// homeOn returns r's target when it is current on c, else nil: it never
// blocks nor re-obtains, since the encoder asks it while writing a value.
func (r *Ref) homeOn(c *broker.Conn) *broker.Ref {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.local || r.conn != c {
		return nil
	}
	return r.target
}

// Client returns the client the reference belongs to.
func (r *Ref) Client() *Client { return r.cl }

// current returns the target if it is valid on the current connection.
func (r *Ref) current(conn *broker.Conn) *broker.Ref {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn == conn || r.local {
		return r.target
	}
	return nil
}

// resolve returns the target on the current connection, obtaining it again
// if the connection changed since it was last obtained.
//
// A link that ends or drains while the target is being obtained on it is
// no failure of the caller's: the client is already moving to another
// link, and the target is obtained there (at most twice more).
func (r *Ref) resolve(ctx context.Context) (*broker.Ref, *broker.Conn, error) {
	if r.local {
		return r.target, nil, nil
	}
	for attempt := 0; ; attempt++ {
		conn, err := r.link(ctx)
		if err != nil {
			return nil, nil, err
		}
		if t := r.current(conn); t != nil {
			return t, conn, nil
		}
		t, err := r.reobtainHeld(ctx, conn)
		if err == nil {
			return t, conn, nil
		}
		if attempt < 2 && ctx.Err() == nil && linkMovedOn(err, conn) {
			continue // r.link waits until the client has left conn
		}
		r.reobtainFailed(ctx, err)
		return nil, nil, err
	}
}

// reobtainHeld is reobtain with r.sem held: one caller at a time obtains
// the target, and the others find it obtained.
func (r *Ref) reobtainHeld(ctx context.Context, conn *broker.Conn) (*broker.Ref, error) {
	select {
	case r.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.sem }()
	return r.reobtain(ctx, conn)
}

// linkMovedOn reports whether err, from obtaining a target on conn, says
// only that conn is over while the obtaining call did not run: conn's
// server refused it because it drains, conn ended before it was sent, or a
// parent was meanwhile obtained on a newer link. Obtaining it again on the
// client's next link is then safe. A call lost in flight
// (broker.ErrConnectionLost) is not one: it may have run.
func linkMovedOn(err error, conn *broker.Conn) bool {
	if errors.Is(err, broker.ErrConnectionLost) {
		return false
	}
	return refusedDraining(err, conn) || linkFailed(err, conn) || errors.Is(err, errLinkChanged)
}

// link is the client's link for a call through r: an error for a link
// that is down names what the call needed, r.
func (r *Ref) link(ctx context.Context) (*broker.Conn, error) {
	conn, err := r.cl.link(ctx)
	var ld *linkDown
	if errors.As(err, &ld) {
		named := *ld
		named.target = r.about()
		err = &named
	}
	return conn, err
}

// reobtain obtains the target afresh on conn, unless another caller got it
// meanwhile or it is gone for good, and keeps it. It runs with r.sem held.
func (r *Ref) reobtain(ctx context.Context, conn *broker.Conn) (*broker.Ref, error) {
	if t := r.current(conn); t != nil { // another caller got it meanwhile
		return t, nil
	}
	r.mu.Lock()
	gone, old, oldConn := r.gone, r.target, r.conn
	r.mu.Unlock()
	if gone != nil {
		return nil, gone
	}
	t, err := r.obtain(ctx, conn)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.target, r.conn, r.failed = t, conn, ""
	r.mu.Unlock()
	// The old target is let go once the new one is in place, not before:
	// a caller that resolved r before, and calls the old target now, sees
	// ErrReleased only when r names another target, which is how Call
	// knows to make the call again on this link (droppedMeanwhile). Let go
	// while the new one was being obtained, the call failed as made on a
	// reference its holder released (TestCallerOnAnOldLinkWhileAnotherObtainsIt).
	if old != nil && (oldConn == nil || oldConn.Err() != nil) {
		old.Release() // its connection is gone: nothing is sent
	}
	// An old target whose connection is still up (its server drains, and
	// the client moved on) is left alone: a caller that resolved r before
	// may be about to call it, and must see that call refused as made on
	// a connection going away (made again on this link by Call), not as
	// made on a released reference. The connection's end drops it.
	if r.parent == nil {
		// A named target describes itself now, once per connection, so that
		// a call lost later can be judged safe to repeat without waiting for
		// the link. A failure here only means less is known.
		_, _ = r.learn(ctx, t)
	}
	return t, nil
}

// learn asks t, r's target, to describe itself and keeps the answer for
// judging later calls. It asks on this process's own authority: the
// description is kept for every later caller, and a guarded object
// describes only what the asker may call.
func (r *Ref) learn(ctx context.Context, t *broker.Ref) (*broker.Description, error) {
	d, err := t.Describe(broker.AsSelf(ctx))
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.desc = &d
	r.mu.Unlock()
	return &d, nil
}

// obtain gets the target afresh on conn.
func (r *Ref) obtain(ctx context.Context, conn *broker.Conn) (*broker.Ref, error) {
	if r.parent == nil {
		return broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", r.name)
	}
	// A mirror's source finds its feed again by the feed's token, on
	// whatever the link is now (through relays too: each hop answers for
	// its own feed). Only a token its owner no longer knows (the owner
	// restarted, or the model is gone) leads to replaying the call.
	if t, err := r.findFeed(ctx, conn); t != nil || err != nil {
		return t, err
	}
	if err := r.checkReplayable(ctx); err != nil {
		return nil, err
	}
	pt, pconn, err := r.parent.resolve(ctx)
	if err != nil {
		return nil, err
	}
	if pconn != conn {
		return nil, fmt.Errorf("%w: %w while re-obtaining %v", ErrDisconnected, errLinkChanged, r)
	}
	return broker.Call[*broker.Ref](ctx, pt, r.method, r.args...)
}

// findFeed asks conn's far end for the feed whose token r holds, if it
// holds one. It returns nil and no error when there is no token, or when
// the feed's owner no longer knows it: the token is then dropped and r
// marked as having lost its feed.
func (r *Ref) findFeed(ctx context.Context, conn *broker.Conn) (*broker.Ref, error) {
	r.mu.Lock()
	tok := r.feedToken
	r.mu.Unlock()
	if tok == "" {
		return nil, nil
	}
	t, err := broker.Call[*broker.Ref](ctx, conn.Root(), captable.Method, tok)
	switch {
	case err == nil && t != nil:
		return t, nil
	case err == nil:
		return nil, fmt.Errorf("%w: %s returned no feed", broker.ErrBadReply, captable.Method)
	case !errors.Is(err, captable.ErrUnknown):
		return nil, err
	}
	r.mu.Lock()
	r.feedToken, r.feedLost = "", true // a new subscription brings the new feed's token
	r.mu.Unlock()
	return nil, nil
}

// checkReplayable fails, and marks r gone for good, unless the call that
// returned r is declared safe to repeat: a derived reference is replayed
// only then.
func (r *Ref) checkReplayable(ctx context.Context) error {
	r.mu.Lock()
	feedLost := r.feedLost
	r.mu.Unlock()
	ok, err := r.parent.idempotent(ctx, r.method)
	if err != nil || ok {
		return err
	}
	if feedLost {
		err = feed.Lost(fmt.Sprintf("%v: the model's owner no longer has the feed it followed (it restarted, or the model is gone), "+
			"and %s is not declared idempotent, so it is not called again by itself; call %s again for a new mirror, "+
			"or declare it Idempotent (remoteable.Methods) to have mirrors follow a restarted owner", r, r.method, r.method), nil)
	} else {
		err = replay.Mark(fmt.Errorf("%w: %v: %s is not declared idempotent, so it is not replayed after an outage", broker.ErrDeadReference, r, r.method))
	}
	r.mu.Lock()
	r.gone = err
	r.mu.Unlock()
	return err
}

// idempotent reports whether method is declared safe to repeat on the
// target, asking the target to describe itself if nothing is known yet.
func (r *Ref) idempotent(ctx context.Context, method string) (bool, error) {
	t, _, err := r.resolve(ctx)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	d := r.desc
	r.mu.Unlock()
	if d == nil {
		if d, err = r.learn(ctx, t); err != nil { // kept for all callers
			return false, err
		}
	}
	m, ok := d.Method(method)
	return ok && m.Idempotent, nil
}

// knownIdempotent answers from what the target last said about itself,
// without asking: a lost call is judged at once, not after the link is back.
func (r *Ref) knownIdempotent(method string) bool {
	r.mu.Lock()
	d := r.desc
	r.mu.Unlock()
	if d == nil {
		return false
	}
	m, ok := d.Method(method)
	return ok && m.Idempotent
}

// Call invokes method on the target. A reference in the result, decoded into
// a *Ref reply (or inside an `any` reply), comes back as a *Ref derived from
// this one; a *broker.Ref reply gets the bare reference, which does not
// survive outages.
func (r *Ref) Call(ctx context.Context, method string, reply any, args ...any) error {
	for attempt := 0; ; attempt++ {
		t, conn, err := r.resolve(ctx)
		if err != nil {
			return withMethod(err, method)
		}
		err = r.callOnce(ctx, t, method, reply, args)
		if ran := (*ranError)(nil); errors.As(err, &ran) {
			// The call ran, and what failed is taking its result (a
			// mirror's subscription, say): whatever that error looks
			// like, the call is not made again unless it is idempotent,
			// and the error says so.
			if !r.knownIdempotent(method) {
				return fmt.Errorf("%w (%q ran; taking its result failed, so it is not made again)", ran.err, method)
			}
			err = ran.err
		}
		if (refusedDraining(err, conn) || r.droppedMeanwhile(err, t, conn)) && attempt < 2 {
			continue // it did not run: make it on the next link
		}
		if err == nil || !linkFailed(err, conn) || attempt >= 2 {
			return err
		}
		if errors.Is(err, broker.ErrConnectionLost) {
			// It may have run: repeat it only if it is known to be declared
			// idempotent, and only once, after the link is back.
			if attempt > 0 || !r.knownIdempotent(method) {
				return err
			}
			// The caller is committed to this call: the repeat waits for
			// the link (bounded by ctx) rather than fail fast on a client
			// that is waiting out a backoff.
			ctx = WaitForLink(ctx)
			continue
		}
		// It was never sent: try again on whatever the link is now.
		select {
		case <-conn.Closed():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refusedDraining reports whether err is conn's server refusing the call
// because it drains: the call did not run, and conn's peer said it is
// going away, so the client is dialling another link. A refusal passed on
// by a relay whose own upstream drains is not one: the relay's link is up.
func refusedDraining(err error, conn *broker.Conn) bool {
	if conn == nil || !errors.Is(err, broker.ErrGoingAway) || errors.Is(err, broker.ErrDeadReference) {
		return false
	}
	select {
	case <-conn.GoingAway():
		return true
	default:
		return false
	}
}

// droppedMeanwhile reports whether err is a call on t refused because t
// was released, by another caller of r that obtained the target again on
// a newer link after t's own had ended (reobtain): the call was not sent.
// An error the far side returned is never one, whatever it matches: the
// call reached the far side, and its handler may have run (one that used
// a reference of its own it had released, say).
func (r *Ref) droppedMeanwhile(err error, t *broker.Ref, conn *broker.Conn) bool {
	var re *broker.RemoteError
	if !errors.Is(err, broker.ErrReleased) || errors.As(err, &re) {
		return false
	}
	return t.Conn() != nil && t.Conn().Err() != nil && r.current(conn) != t
}

// ranError is the error of a call that ran (its target returned its
// result) but whose result could not be taken: wrapping a reference in it,
// or attaching the mirror it was received into. callOnce returns it so
// that Call does not take it for a call that did not run.
type ranError struct{ err error }

func (e *ranError) Error() string { return e.err.Error() }
func (e *ranError) Unwrap() error { return e.err }

// afterRun marks err, if any, as the error of taking the result of a call
// that ran.
func afterRun(err error) error {
	if err == nil {
		return nil
	}
	return &ranError{err}
}

// linkFailed reports whether err says that conn itself died (as opposed to
// an error the far side returned, which may name a dead reference of its
// own, or an error of a local object).
func linkFailed(err error, conn *broker.Conn) bool {
	var re *broker.RemoteError
	if conn == nil || errors.As(err, &re) || broker.CodeOf(err) != broker.Unavailable {
		return false
	}
	return conn.Err() != nil
}

// callOnce makes one call on t, wrapping references in the result. An
// error after the call returned its result is a *ranError.
func (r *Ref) callOnce(ctx context.Context, t *broker.Ref, method string, reply any, args []any) error {
	args, err := r.homeArgs(ctx, t.Conn(), args)
	if err != nil {
		return err
	}
	switch p := reply.(type) {
	case **Ref:
		var b *broker.Ref
		if err := t.Call(ctx, method, &b, args...); err != nil {
			return err
		}
		*p = r.derive(method, args, b)
		return nil
	case *any:
		if err := t.Call(ctx, method, p, args...); err != nil {
			return err
		}
		w := resultWrapper{r: r, method: method, args: args, relayed: broker.Forwarded(ctx)}
		var err error
		*p, err = w.wrap(ctx, *p)
		return afterRun(err)
	}
	if mt, ok := mirrorReply(reply); ok {
		return r.callMirror(ctx, t, method, reply, mt, args)
	}
	if it, ok := stubReply(reply); ok {
		return r.callStub(ctx, t, method, reply, it, args)
	}
	return t.Call(ctx, method, reply, args...)
}

// stubReply returns the interface type a reply points to when a reference
// decoded into it becomes a typed stub (remoteable.RegisterStub): an
// interface with methods other than error.
func stubReply(reply any) (reflect.Type, bool) {
	rt := reflect.TypeOf(reply)
	if rt == nil || rt.Kind() != reflect.Pointer {
		return nil, false
	}
	it := rt.Elem()
	if it.Kind() != reflect.Interface || it.NumMethod() == 0 || it == errorType {
		return nil, false
	}
	return it, true
}

// errorType is error, which a reply decodes into as it always did.
var errorType = reflect.TypeFor[error]()

// callStub makes a call whose reply is of interface type it: a reference in
// the result becomes it's stub over a *Ref derived from r, so that the
// typed reference lasts as a **Ref reply does (re-obtained after an outage
// by replaying the call, when it is idempotent). A local object or a
// Copyable that implements it arrives as it is.
func (r *Ref) callStub(ctx context.Context, t *broker.Ref, method string, reply any, it reflect.Type, args []any) error {
	var x any
	if err := t.Call(ctx, method, &x, args...); err != nil {
		return err
	}
	out := reflect.ValueOf(reply).Elem()
	if x == nil {
		out.SetZero()
		return nil
	}
	if b, ok := x.(*broker.Ref); ok {
		w := resultWrapper{r: r, method: method, args: args, relayed: broker.Forwarded(ctx)}
		wrapped, err := w.ref(ctx, b)
		if err != nil {
			return afterRun(err)
		}
		x = wrapped
	}
	v, err := typereg.Convert(it, x)
	if err != nil {
		return afterRun(fmt.Errorf("%s: %w", method, err))
	}
	out.Set(v)
	return nil
}

// homeArgs replaces the wrappers among args whose targets live behind conn
// with those targets, so that an object passed back to the process that
// owns it arrives as the owner's own object, not as a reference to a
// forwarding proxy here. The caller's slice is left as it was: a derived
// wrapper re-obtains with the wrappers, resolved again then.
func (r *Ref) homeArgs(ctx context.Context, conn *broker.Conn, args []any) ([]any, error) {
	var out []any
	for i, a := range args {
		a = stubCaller(a)
		w, ok := a.(*Ref)
		if !ok || w == nil || w.cl != r.cl || w.local || conn == nil {
			continue
		}
		t, wconn, err := w.resolve(ctx)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i+1, err)
		}
		if wconn != conn {
			continue // the link changed in between: the call fails on its own
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = t
	}
	if out == nil {
		return args, nil
	}
	return out, nil
}

// stubCaller returns the Caller a typed stub wraps (a stub goes as the
// Caller it wraps), or a itself when it is not a stub.
func stubCaller(a any) any {
	s, ok := a.(remoteable.Stub)
	if !ok {
		return a
	}
	if v := reflect.ValueOf(a); v.Kind() == reflect.Pointer && v.IsNil() {
		return a // the encoder sends a nil stub as null
	}
	return s.TetherCaller()
}

// derive wraps a reference that a call on r returned.
func (r *Ref) derive(method string, args []any, b *broker.Ref) *Ref {
	if b == nil {
		return nil
	}
	d := newRef(r.cl)
	d.parent, d.method, d.args = r, method, args
	d.target = b
	if _, local := b.Local(); local {
		d.local = true // one of our own objects came back: nothing to re-obtain
	} else {
		d.conn = b.Conn()
	}
	return d
}

// resultWrapper replaces the broker references in a generic result with
// derived wrappers, so that a relay hands out references that survive
// outages. A relay passing on a model (a Cacheable) passes on its own
// mirror of it instead, one per model, so that the model has one
// subscription upstream whatever the number of mirrors downstream.
type resultWrapper struct {
	r *Ref // the reference called
	// method and args are the call that returned the result: each
	// wrapper replays it to re-obtain its target.
	method  string
	args    []any
	relayed bool // the result goes on to a peer (see Ref.exportCount)
}

// wrap returns v with the references in it wrapped, at any depth of
// slices and maps.
func (w resultWrapper) wrap(ctx context.Context, v any) (any, error) {
	switch x := v.(type) {
	case *broker.Ref:
		return w.ref(ctx, x)
	case []any:
		return v, wrapElems(ctx, w, x)
	case map[string]any:
		return v, wrapMapValues(ctx, w, x)
	case map[any]any:
		return v, wrapMapValues(ctx, w, x)
	}
	return v, nil
}

// ref wraps one reference of the result: a local object stays as it is,
// and a model a relay passes on becomes its relay mirror.
func (w resultWrapper) ref(ctx context.Context, x *broker.Ref) (any, error) {
	if _, local := x.Local(); local {
		return x, nil
	}
	if w.relayed && x.Cacheable() {
		return w.r.mirrorFor(ctx, w.method, w.args, x)
	}
	d := w.r.derive(w.method, w.args, x)
	if w.relayed {
		holders.OnLast(&d.exportCount, d.Release)
	}
	return d, nil
}

// wrapElems wraps the references in a slice of a result, in place.
func wrapElems(ctx context.Context, w resultWrapper, s []any) error {
	var err error
	for i := range s {
		if s[i], err = w.wrap(ctx, s[i]); err != nil {
			return err
		}
	}
	return nil
}

// wrapMapValues wraps the references in a map of a result, in place; both
// kinds of map a generic result decodes to share it.
func wrapMapValues[K comparable](ctx context.Context, w resultWrapper, m map[K]any) error {
	var err error
	for k := range m {
		if m[k], err = w.wrap(ctx, m[k]); err != nil {
			return err
		}
	}
	return nil
}

// Release gives the current target back. The wrapper stays usable: a later
// call obtains the target again.
func (r *Ref) Release() {
	r.mu.Lock()
	t := r.target
	r.target, r.conn = nil, nil
	r.mu.Unlock()
	if t != nil {
		t.Release()
	}
}

// Cacheable reports whether the target is a model's feed: a Cacheable
// received into an `any` (see broker.Ref.Cacheable). A mirror can follow it.
func (r *Ref) Cacheable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target != nil && r.target.Cacheable()
}

// Describe asks the target to describe itself.
func (r *Ref) Describe(ctx context.Context) (broker.Description, error) {
	var d broker.Description
	err := r.Call(ctx, broker.DescribeMethod, &d)
	return d, err
}
