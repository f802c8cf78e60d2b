package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/linkwait"
	"github.com/tether-go/tether/remoteable"
)

// This file holds this side's calls: the table of calls waiting for their
// results (docs/protocol.md §6, Call, Return, Fail, Cancel), and calls on
// local objects, which need no table.

// call is one outgoing call waiting for its result.
type call struct {
	method string // for the error of a call whose connection died
	reply  any
	opaque bool
	// nestable: the call was made with a handler's context, so the peer
	// may nest calls in it (extNestedIn) that a draining side admits.
	nestable bool
	err      error
	attach   []attachTask  // mirrors in the reply, attached by the caller
	done     chan struct{} // receives exactly once per use
	direct   directRead    // the result being read straight into reply (Conn.returnDirect)
	// refInl is the storage of the result decoder's list of the handles it
	// made (decoder.imported), for a result carrying one: cleared on
	// recycling, so that a pooled call keeps no handle from the collector.
	refInl [1]*Ref
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// newCall takes a call from the pool for method, whose result goes to reply.
func newCall(ctx context.Context, method string, reply any) *call {
	cl := callPool.Get().(*call)
	cl.method, cl.reply, cl.err, cl.opaque, cl.nestable = method, reply, nil, false, false
	if _, ok := reply.(*any); ok && (Forwarded(ctx) || ctx.Value(opaqueKey{}) != nil) {
		cl.opaque = true
	}
	return cl
}

// recycle puts cl back in the pool once nobody uses it any more.
func (cl *call) recycle() {
	cl.reply, cl.err, cl.attach, cl.refInl = nil, nil, nil, [1]*Ref{}
	callPool.Put(cl)
}

// pendingCalls is the table of this side's calls waiting for results,
// keyed by call id, which the reader completes (handleResult) and
// teardown fails all at once (failPending).
type pendingCalls struct {
	mu     sync.Mutex
	calls  map[uint64]*call
	next   uint64 // the last call id used
	closed bool   // the connection ended: no call may wait any more
}

// add registers cl under a new call id; false means the connection ended.
func (p *pendingCalls) add(cl *call) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, false
	}
	p.next++
	p.calls[p.next] = cl
	return p.next, true
}

// nests reports whether call id (not 0) is waiting for its result and
// was made by a handler, so that a call the peer says is nested in it may
// be: a call of this side's own (the going-away notice, a feed's batch)
// nests nothing, else a peer could hold it unanswered and name it to get
// new calls admitted during a drain.
func (p *pendingCalls) nests(id uint64) bool {
	if id == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cl, ok := p.calls[id]
	return ok && cl.nestable
}

// take removes and returns call id, or nil when its caller gave up.
func (p *pendingCalls) take(id uint64) *call {
	p.mu.Lock()
	defer p.mu.Unlock()
	cl := p.calls[id]
	delete(p.calls, id)
	return cl
}

// takeBytes takes call id if its reply is a *[]byte with room for size
// bytes, and returns it with that room (see Conn.returnDirect); nil if the
// call is not waiting or its reply is anything else.
func (p *pendingCalls) takeBytes(id uint64, size int, st *yamux.Stream) (*call, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cl := p.calls[id]
	if cl == nil {
		return nil, nil
	}
	rp, ok := cl.reply.(*[]byte)
	if !ok || cap(*rp) < size {
		return nil, nil
	}
	delete(p.calls, id)
	cl.direct.begin(st)
	return cl, (*rp)[:size]
}

// call makes a call on the peer's object target and waits for its
// result, through the client interceptors if there are any. name is the
// target's registry name, for them (Target.Name).
func (c *Conn) call(ctx context.Context, target uint64, name, method string, reply any, args []any) error {
	if len(c.opts.clientICs) != 0 {
		return c.interceptCall(ctx, target, name, method, reply, args)
	}
	return c.send(ctx, target, method, reply, args)
}

// send sends a call on the peer's object target and waits for its result.
func (c *Conn) send(ctx context.Context, target uint64, method string, reply any, args []any) error {
	timeout, err := callTimeout(ctx)
	if err != nil {
		return err
	}
	if err := checkReply(reply); err != nil {
		return err
	}
	if !utf8.ValidString(method) {
		// The peer would refuse the whole message, and the connection.
		return fmt.Errorf("%w: the method name %q is not valid UTF-8", ErrUnknownMethod, method)
	}
	acting, err := c.forwardedFor(ctx, method)
	if err != nil {
		return err
	}
	// The caller's wish to wait for links travels with the call, as its
	// deadline does, so that a relay passing it on waits for its own link.
	nested, inHandler := nestedIn(ctx, c)
	ext := callExt{acting: acting, waitLink: linkwait.Wanted(ctx), md: outgoingMetadata(ctx), nestedIn: nested}
	if ext.md != nil {
		if err := checkMetadata(ext.md); err != nil {
			return fmt.Errorf("%w (calling %s)", err, method)
		}
	}
	cl := newCall(ctx, method, reply)
	cl.nestable = inHandler
	id, ok := c.pending.add(cl)
	if !ok {
		cl.recycle()
		return named(c.deadErr(), method)
	}
	c.callsOut.Add(1)
	defer c.callsOut.Add(-1)

	e := getEncoder(c)
	e.scatter = true // the arguments do not change until Call returns
	h := callHead{id: id, target: target, method: method, timeout: timeout, argc: len(args), ext: !ext.empty()}
	err = c.encodeCall(e, h, args, ext)
	onStream := false
	if err == nil {
		onStream = c.onMessageStream(e)
		// The health call is answered by a draining peer, and so is a call
		// nested in one of the peer's (the peer's handler waits for it):
		// they may follow the answer to the going-away notice (see
		// sender.sendCall).
		err = c.sendFrame(ctx, e, (target != 0 || method != HealthMethod) && ext.nestedIn == 0)
	}
	if err != nil {
		e.undo()
		putEncoder(e)
		return c.notSent(ctx, id, cl, err)
	}
	putEncoder(e)
	return c.awaitResult(ctx, id, cl, onStream)
}

// callTimeout is what a call made with ctx says of its deadline: the
// nanoseconds left, or 0 for none. It fails when ctx has ended.
func callTimeout(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return uint64(d), nil
}

// encodeCall writes a Call, its arguments and its extension, and checks it
// against what the peer accepts.
func (c *Conn) encodeCall(e *encoder, h callHead, args []any, ext callExt) error {
	e.buf = appendCall(e.buf, h)
	e.level = callArgLevel
	for i, a := range args {
		if err := e.any(a); err != nil {
			return argError(err, i, h.method)
		}
	}
	if h.ext {
		e.buf = appendCallExt(e.buf, ext)
	}
	if e.bodyLen() > c.peerMax {
		return fmt.Errorf("%w: the call is %d bytes; the peer accepts %d", ErrMessageTooLarge, e.bodyLen(), c.peerMax)
	}
	return e.checkItems("the call")
}

// argError says which argument of method could not be encoded.
func argError(err error, i int, method string) error {
	if s := argSentinel(err); s != nil {
		return within(err, s, fmt.Sprintf("argument %d of %s", i+1, method))
	}
	return fmt.Errorf("%w: argument %d of %s: %w", ErrBadArguments, i+1, method, err)
}

// notSent takes back call id, which could not be sent, and returns its
// error.
func (c *Conn) notSent(ctx context.Context, id uint64, cl *call, err error) error {
	method := cl.method
	c.abandon(id, cl)
	if err == errCallAfterGoingAway {
		// The reader closes away right after queueing the answer that
		// refused this call: wait for it, so that GoingAway agrees with
		// this error when the caller looks (remote.Ref decides to make
		// the call again on the next link by it).
		<-c.away
		return fmt.Errorf("%w: %q was not sent, since the peer said it is going away; "+
			"it did not run: call again, a remote.Client reconnects by itself", ErrGoingAway, method)
	}
	var le *linkError
	if errors.As(err, &le) {
		// The link failed under the write, and its teardown follows (the
		// reader sees the dead session too). Wait for it, so that Err and
		// Closed agree with this error when the caller looks: a caller
		// deciding whether to retry asks them.
		select {
		case <-c.dying:
		case <-ctx.Done():
		}
	}
	return named(err, method)
}

// awaitResult waits for the result of call id; when ctx ends first, it
// gives up and tells the callee. onStream says the call went on a message
// stream.
func (c *Conn) awaitResult(ctx context.Context, id uint64, cl *call, onStream bool) error {
	select {
	case <-cl.done:
	case <-ctx.Done():
		if c.abandon(id, cl) {
			c.postCancel(id, onStream)
			return ctx.Err()
		}
		// The result arrived as we gave up: use it, unless it was being
		// read into the reply, which the reader then left unfinished.
	}
	err, attach := cl.err, cl.attach
	cl.recycle()
	if errors.Is(err, errGaveUp) {
		return ctx.Err()
	}
	if err == nil && len(attach) > 0 {
		err = runAttach(ctx, attach)
	}
	return err
}

// nestedIn returns the id of the peer's call on c that ctx is the handler
// context of, or 0: a call made with it is nested in that call; and
// whether ctx is a handler's context at all (of a call on any
// connection), in which case the peer may nest calls in this one.
func nestedIn(ctx context.Context, c *Conn) (id uint64, inHandler bool) {
	x, ok := ctx.Value(callKey{}).(*callCtx)
	if !ok {
		return 0, false
	}
	if x.c == c {
		return x.id, true
	}
	return 0, true
}

// argSentinel returns the sentinel an argument's encoding error keeps as
// it is, rather than being reported as ErrBadArguments: the argument was
// well formed, but a limit or the state of a reference stops it (ErrClosed:
// a lasting reference whose client was closed).
func argSentinel(err error) error {
	for _, s := range []error{ErrTooManyReferences, ErrReleased, ErrDeadReference, ErrTooDeep, ErrClosed} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}

// placedError is an error with where it happened put after its sentinel's
// text, so that the message still starts with "tether:" once.
type placedError struct {
	msg string
	err error
}

func (e *placedError) Error() string { return e.msg }
func (e *placedError) Unwrap() error { return e.err }

// within says where err (which matches sentinel) happened: "tether:
// reference released: argument 1 of Watch: ...".
func within(err, sentinel error, where string) error {
	msg, head := err.Error(), sentinel.Error()
	switch {
	case msg == head:
		msg = head + ": " + where
	case strings.HasPrefix(msg, head+": "):
		msg = head + ": " + where + ": " + msg[len(head)+2:]
	default:
		msg = head + ": " + where + ": " + strings.TrimPrefix(msg, "tether: ")
	}
	return &placedError{msg: msg, err: err}
}

// abandon removes a pending call. It reports false if the reader or the
// teardown already took it, in which case it waits for that to finish.
// Either way cl is back in the pool when abandon returns true.
func (c *Conn) abandon(id uint64, cl *call) bool {
	c.pending.mu.Lock()
	mine := c.pending.calls[id] == cl
	if mine {
		delete(c.pending.calls, id)
	}
	c.pending.mu.Unlock()
	if !mine {
		// The reader has the result; one it is reading straight into the
		// reply stops at the first read that would wait (interrupt).
		cl.direct.interrupt()
		<-cl.done
		return false
	}
	cl.recycle()
	return true
}

// postCancel tells the callee to give up on call id. mayPrecede says the call
// went on a message stream, so the cancel may arrive before it.
func (c *Conn) postCancel(id uint64, mayPrecede bool) {
	e := getEncoder(c)
	e.buf = appendCancel(e.buf, id, mayPrecede)
	c.out.post(e.frame())
	putEncoder(e)
}

// failPending fails every call waiting for a result at once, with the
// link's error, when the connection ended with cause.
func (c *Conn) failPending(cause error) {
	c.pending.mu.Lock()
	c.pending.closed = true
	pending := c.pending.calls
	c.pending.calls = nil
	c.pending.mu.Unlock()
	for _, cl := range pending {
		le := c.linkErr(true, cause)
		le.method = cl.method
		cl.err = le
		cl.done <- struct{}{}
	}
}

// checkReply rejects a reply that cannot receive a result.
func checkReply(reply any) error {
	switch reply.(type) {
	case nil, *any, *[]byte, *string, *int, *int64, *bool, *float64, **Ref:
		return nil
	}
	if v := reflect.ValueOf(reply); v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("%w: reply must be a non-nil pointer, not %T", ErrBadReply, reply)
	}
	return nil
}

// reply decodes a result into reply, a non-nil pointer.
func (d *decoder) reply(reply any) error {
	if p, ok := reply.(*any); ok {
		x, err := d.generic()
		if err == nil {
			*p = x
		}
		return err
	}
	v := reflect.ValueOf(reply).Elem()
	return d.value(v, infoOf(v.Type()))
}

// localCall invokes a method on an object of this process, converting
// nothing: arguments must be assignable to the parameters. Made with a
// handler's context (and not AsSelf), the call acts for the handler's
// caller, so a guarded object's policy judges that caller as it would its
// own call: a peer cannot have a handler call, on its behalf, an object it
// may not call itself by handing the handler a reference to it.
func localCall(ctx context.Context, obj any, method string, reply any, args []any) error {
	ot := objTypeOf(obj)
	if ot.guarded && ctx.Value(connKey{}) != nil && ctx.Value(selfKey{}) == nil {
		if err := admit(ctx, obj, method); err != nil {
			return err
		}
	}
	if ot.forwards {
		return obj.(remoteable.Caller).Call(ctx, method, reply, args...)
	}
	if err := checkReply(reply); err != nil {
		return err
	}
	m := ot.methods[method]
	if m == nil {
		return ot.noMethod(obj, method)
	}
	in, err := localArgs(ctx, obj, m, args)
	if err != nil {
		return err
	}
	out, err := invokeLocal(m, in)
	if err != nil {
		return err
	}
	return setLocalReply(m, out, reply)
}

// localArgs checks a local call's arguments against m's parameters and
// returns the method's inputs, receiver and context first.
func localArgs(ctx context.Context, obj any, m *method, args []any) ([]reflect.Value, error) {
	if lo, hi := m.arity(); len(args) < lo || (hi >= 0 && len(args) > hi) {
		return nil, argCountError(m.name, lo, hi, len(args))
	}
	in := []reflect.Value{reflect.ValueOf(obj)}
	if m.hasCtx {
		in = append(in, reflect.ValueOf(&ctx).Elem())
	}
	for i, a := range args {
		pi := m.paramInfo(i)
		pt := pi.t
		if refusesNil(pi) && (a == nil || a == any((*Ref)(nil))) {
			return nil, errNilArgument(i, m.name, pi)
		}
		if a == nil {
			in = append(in, reflect.Zero(pt))
			continue
		}
		av := reflect.ValueOf(a)
		if !av.Type().AssignableTo(pt) {
			return nil, fmt.Errorf("%w: argument %d of %s: %T is not %v", ErrBadArguments, i+1, m.name, a, pt)
		}
		in = append(in, av)
	}
	return in, nil
}

// invokeLocal runs a local method, turning a panic into ErrPanic and the
// method's error into the call's.
func invokeLocal(m *method, in []reflect.Value) (out []reflect.Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v", ErrPanic, m.name, p)
		}
	}()
	out = m.fn.Call(in)
	if e := out[len(out)-1]; !e.IsNil() {
		return nil, e.Interface().(error)
	}
	return out, nil
}

// setLocalReply stores a local method's result in reply, if both exist.
func setLocalReply(m *method, out []reflect.Value, reply any) error {
	if m.result == nil || reply == nil {
		return nil
	}
	rv := reflect.ValueOf(reply).Elem()
	if !out[0].Type().AssignableTo(rv.Type()) {
		return fmt.Errorf("%w: %s returns %v, reply is %v", ErrBadReply, m.name, out[0].Type(), rv.Type())
	}
	rv.Set(out[0])
	return nil
}
