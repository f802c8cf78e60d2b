package broker

import (
	"context"
	"fmt"
	"reflect"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/snapmark"
	"github.com/tether-go/tether/remoteable"
)

// The interceptor seam: code that wraps every call a connection makes
// (client interceptors) or handles (server interceptors), for metrics,
// tracing, logging or refusing calls, given as options
// (WithClientInterceptors, WithServerInterceptors) rather than installed
// process-wide. A connection with none pays one length check per call.

// CallKind says what a call is for, so that an interceptor can tell cache
// subscriptions from ordinary method calls.
type CallKind uint8

// The kinds of call an interceptor sees.
const (
	// CallMethod is an ordinary method call.
	CallMethod CallKind = iota
	// CallSubscribe is a mirror subscribing to a model from nothing: a
	// snapshot follows.
	CallSubscribe
	// CallResume is a mirror resubscribing from the (epoch, version) it
	// holds: the owner replays the missed changes, or sends a snapshot
	// when its log no longer covers them or the epoch changed.
	CallResume
	// CallResumeByToken is a mirror presenting its feed's token after an
	// outage to get the feed back (the built-in call of docs/protocol.md
	// §11.11); a CallResume follows.
	CallResumeByToken
	// CallSnapshot is the Apply call that carries the first batch of a
	// snapshot to a mirror: the model's owner (or a relay, for the
	// mirrors downstream of its own) found the mirror new, too far behind
	// its log, or on another epoch. It is seen by the sender's client
	// interceptors and the mirror's server interceptors, once per
	// snapshot (one started over, because the log moved past it or a
	// batch was too large, is a new one); the snapshot's other batches,
	// like the changes that follow, are CallMethod calls of Apply.
	CallSnapshot
)

// callKindNames are the kinds' names.
var callKindNames = [...]string{CallMethod: "method", CallSubscribe: "subscribe", CallResume: "resume", CallResumeByToken: "resume-by-token", CallSnapshot: "snapshot"}

// String returns the kind's name.
func (k CallKind) String() string {
	if int(k) < len(callKindNames) {
		return callKindNames[k]
	}
	return fmt.Sprintf("CallKind(%d)", uint8(k))
}

// Target describes the object a call is addressed to.
type Target struct {
	// ID is the object's reference id on the connection; 0 is the root.
	ID uint64
	// Type is the Go type of the object on the handler's side, as %T
	// prints it ("*main.Users"); it is empty on the caller's side, which
	// does not know it, and for a built-in call.
	Type string
	// Name is the registry name of the object, when the call's side knows
	// it: on the caller's side, the name the reference was looked up by
	// (a *Ref returned by a registry's Lookup, and the *remote.Ref that
	// wraps it); on the handler's side, the name under which a registry's
	// Lookup first handed the object out on this connection. It is "" for
	// an object that no Lookup handed out (a registry itself, a callback,
	// a reference another method returned).
	Name string
}

// CallInfo is what an interceptor learns about a call. The call's metadata
// is in the context: IncomingMetadata on the handler's side,
// OutgoingMetadata on the caller's.
type CallInfo struct {
	Kind   CallKind
	Target Target
	Method string
	// Peer is the other end of the connection: the caller on the handler's
	// side (with whom it acts for, Peer.ForwardedFor), the callee on the
	// caller's side.
	Peer remoteable.Peer
	// Client is true in a client interceptor (this side makes the call),
	// false in a server interceptor (this side handles it).
	Client bool
}

// Invoker goes on with a call: the next interceptor in the chain, or the
// call itself (sending it and waiting for its result, or running its
// handler). Its error is the call's.
type Invoker func(ctx context.Context, call *CallInfo) error

// Interceptor wraps a call. It may look at call and the metadata in ctx,
// call next (at most once, and before it returns: next runs the call on
// the interceptor's goroutine) with ctx or a context derived from it — one
// with metadata added by AppendToOutgoing, on the caller's side — and
// return next's error, or another. An interceptor that returns an error
// without calling next refuses the call: the caller gets that error, with
// its code (CodeOf; use NewError to choose one), and the handler does not
// run. An interceptor may replace an error but not hide one: on the
// handler's side, when next failed and the interceptor returns nil, the
// call fails with next's error. A panic in an interceptor fails the call
// with ErrPanic (code Internal); the connection serves on.
type Interceptor func(ctx context.Context, call *CallInfo, next Invoker) error

// WithClientInterceptors adds interceptors around every call the
// connection makes on its peer (calls on *Ref; on a server, callbacks to
// its clients). The first interceptor given, over all the options, is the
// outermost: it runs first and sees the final error last. Calls on local
// objects, which do not cross a connection, are not intercepted.
func WithClientInterceptors(ics ...Interceptor) Option {
	return option{name: "WithClientInterceptors", set: func(o *options) {
		o.clientICs = appendInterceptors(o, "WithClientInterceptors", o.clientICs, ics)
	}}
}

// WithServerInterceptors adds interceptors around every call the
// connection handles for its peer (on a dialed connection, the peer's
// callbacks), relayed calls and cache subscriptions included. The first
// interceptor given, over all the options, is the outermost. A call
// refused before its handler could run (an unknown reference or method,
// bad arguments, over a limit, refused by the target's policy, a server
// draining) goes through them too, with a next that returns the refusal:
// that happens on the connection's reader, which waits for them, so an
// interceptor must be quick (record, not export).
func WithServerInterceptors(ics ...Interceptor) Option {
	return option{name: "WithServerInterceptors", set: func(o *options) {
		o.serverICs = appendInterceptors(o, "WithServerInterceptors", o.serverICs, ics)
	}}
}

// appendInterceptors appends ics to chain, refusing a nil interceptor.
func appendInterceptors(o *options, name string, chain, ics []Interceptor) []Interceptor {
	for i, ic := range ics {
		if ic == nil {
			o.fail(fmt.Errorf("tether: %s: interceptor %d is nil: remove it", name, i+1))
			return chain
		}
	}
	return append(chain, ics...)
}

// runChain runs call through the interceptors ics, outermost first, then
// final.
func runChain(ctx context.Context, call *CallInfo, ics []Interceptor, final Invoker) error {
	if len(ics) == 0 {
		return final(ctx, call)
	}
	next := func(ctx context.Context, call *CallInfo) error { return runChain(ctx, call, ics[1:], final) }
	return runInterceptor(ctx, call, ics[0], next)
}

// runInterceptor runs one interceptor, turning its panic into ErrPanic
// for this call only.
func runInterceptor(ctx context.Context, call *CallInfo, ic Interceptor, next Invoker) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: an interceptor of %s: %v", ErrPanic, call.Method, p)
		}
	}()
	return ic(ctx, call, next)
}

// interceptCall makes a call through the client interceptors.
func (c *Conn) interceptCall(ctx context.Context, target uint64, name, method string, reply any, args []any) error {
	info := &CallInfo{Kind: clientKind(ctx, method, args), Target: Target{ID: target, Name: name}, Method: method, Peer: c.peer, Client: true}
	return runChain(ctx, info, c.opts.clientICs, func(ctx context.Context, _ *CallInfo) error {
		return c.send(ctx, target, method, reply, args)
	})
}

// clientKind is the kind of a call as its caller sees it: a Subscribe
// passing a mirror's observer (seams.go) is a subscription, an Apply the
// feed marked (snapmark) starts a snapshot.
func clientKind(ctx context.Context, method string, args []any) CallKind {
	if method == captable.Method {
		return CallResumeByToken
	}
	if method == "Apply" && snapmark.Marked(ctx) {
		return CallSnapshot
	}
	if method != "Subscribe" || len(args) != 3 {
		return CallMethod
	}
	if _, ok := args[0].(cacheObserver); !ok {
		return CallMethod
	}
	if v, ok := args[2].(uint64); ok && v > 0 {
		return CallResume
	}
	return CallSubscribe
}

// interceptRun runs a received call's handler through the server
// interceptors.
func (c *Conn) interceptRun(t *inCall) outcome {
	info := &CallInfo{Kind: t.kind(), Target: t.target(), Method: t.method()}
	info.Peer, _ = remoteable.PeerFrom(t.ctx)
	var o outcome
	ran := false
	err := runChain(t.ctx, info, c.opts.serverICs, func(ctx context.Context, _ *CallInfo) error {
		if ran {
			return fmt.Errorf("%w: an interceptor of %s called next twice", ErrPanic, info.Method)
		}
		ran = true
		// The handler gets the interceptor's context: t.in holds t.ctx by
		// address (setInputs), and forward passes t.ctx on.
		t.ctx = ctx
		o = c.handle(t)
		t.ctx = &t.cc
		return o.err
	})
	switch {
	case err != nil:
		o.err = err
	case !ran:
		o.err = NewError(Internal, fmt.Errorf("%w: an interceptor of %s returned no error and did not call next", ErrPanic, info.Method))
	}
	return o
}

// kind is the kind of a received call: Subscribe on a model's feed (an
// object with CacheModel, see decode.go) is a subscription, Apply on a
// mirror's observer with a snapshot's first batch starts a snapshot.
func (t *inCall) kind() CallKind {
	if t.name == captable.Method && t.ex.obj == nil {
		return CallResumeByToken
	}
	if t.m != nil && t.m.name == "Apply" {
		return t.applyKind()
	}
	if t.m == nil || t.m.name != "Subscribe" {
		return CallMethod
	}
	if _, ok := t.ex.obj.(interface{ CacheModel() any }); !ok {
		return CallMethod
	}
	if last := t.in[len(t.in)-1]; last.Kind() == reflect.Uint64 && last.Uint() > 0 {
		return CallResume
	}
	return CallSubscribe
}

// applyKind is the kind of a received Apply: CallSnapshot when it is a
// mirror's observer's, given the first batch of a snapshot (a batch that
// says so, seams.go: its address is passed, so that nothing is copied).
func (t *inCall) applyKind() CallKind {
	if _, ok := t.ex.obj.(cacheObserver); !ok {
		return CallMethod
	}
	if last := t.in[len(t.in)-1]; last.CanAddr() {
		if b, ok := last.Addr().Interface().(snapshotStart); ok && b.SnapshotStart() {
			return CallSnapshot
		}
	}
	return CallMethod
}

// target describes the object a received call is addressed to.
func (t *inCall) target() Target {
	if t.ex.obj == nil {
		return Target{ID: t.objID}
	}
	return Target{ID: t.objID, Type: reflect.TypeOf(t.ex.obj).String(), Name: t.ex.name}
}

// interceptRefused shows the server interceptors a call refused before a
// handler could run (an unknown method, bad arguments, a limit, the
// target's policy): next returns the refusal. It runs on the connection's
// reader, as the refusal is answered at once; it returns the call's error.
func (c *Conn) interceptRefused(in *callIn, refusal error) error {
	cc := &callCtx{c: c, md: in.ext.md, waitLink: in.ext.waitLink, deadline: deadlineOf(in.timeout)}
	if chain := in.ext.acting.ids; chain != nil {
		p := c.peer
		p.ForwardedFor = chain
		cc.peer, cc.hops = p, in.ext.acting.hops
	}
	defer cc.cancel(context.Canceled, false) // stops a deadline timer Done made
	info := &CallInfo{Kind: CallMethod, Target: Target{ID: in.target}, Method: string(in.method)}
	info.Peer, _ = remoteable.PeerFrom(cc)
	if ex := c.lookupExport(in.target); ex != nil && ex.obj != nil {
		info.Target.Type, info.Target.Name = reflect.TypeOf(ex.obj).String(), ex.name
	}
	err := runChain(cc, info, c.opts.serverICs, func(context.Context, *CallInfo) error { return refusal })
	if err == nil {
		return refusal // an interceptor may replace an error, not hide one
	}
	return err
}
