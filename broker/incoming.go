package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/remoteable"
)

// This file holds the peer's calls as this side receives them: the
// dispatch of every received message by its kind, and for calls the table
// of those running, the handler goroutines and the results they send
// (docs/protocol.md §6).

// receivers dispatch a received message by its kind: one function for
// each message a connection may receive after its handshake.
var receivers = [...]func(c *Conn, m message) error{
	msgCall:    (*Conn).receiveCall,
	msgReturn:  (*Conn).receiveResult,
	msgFail:    (*Conn).receiveResult,
	msgCancel:  (*Conn).receiveCancel,
	msgRelease: (*Conn).receiveRelease,
	msgGoodbye: (*Conn).receiveGoodbye,
}

// handleFrame validates a frame and acts on it. An error is a protocol
// violation that ends the connection; problems with one call are answered
// to the caller instead.
func (c *Conn) handleFrame(body []byte) error { return c.handleBody(body, nil) }

// handleBody is handleFrame for a body that may be owned: in a buffer of
// its own (a message stream's, see msgReader), which the values decoded
// from it may keep, saying so in owned.
func (c *Conn) handleBody(body []byte, owned *ownedBody) (err error) {
	defer func() {
		// A decoding bug must not take the process down: it ends this
		// connection only. The fuzz tests call dispatch, which lets it
		// through, to see it.
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error handling a message: %v", p)
		}
	}()
	return c.dispatchBody(body, owned)
}

// dispatch reads a frame's head and hands the message to the receiver of
// its kind.
func (c *Conn) dispatch(body []byte) error { return c.dispatchBody(body, nil) }

// dispatchBody is dispatch for a body that may be owned (see handleBody).
func (c *Conn) dispatchBody(body []byte, owned *ownedBody) error {
	m, err := parseMessage(body)
	if err != nil {
		return err
	}
	m.owned = owned
	if m.kind >= msgKind(len(receivers)) || receivers[m.kind] == nil {
		return fmt.Errorf("unexpected message type %d", uint64(m.kind))
	}
	return receivers[m.kind](c, m)
}

// receiveCall handles a Call, releasing the references it carries that
// no handle took.
func (c *Conn) receiveCall(m message) error {
	acct := newRefAccount(&m)
	defer acct.settle(c)
	return c.handleCall(&m, acct)
}

// receiveResult handles a Return or a Fail, releasing the references it
// carries that no handle took.
func (c *Conn) receiveResult(m message) error {
	acct := newRefAccount(&m)
	defer acct.settle(c)
	return c.handleResult(&m, acct)
}

// receiveCancel handles a Cancel.
func (c *Conn) receiveCancel(m message) error {
	id, mayPrecede, err := parseCancel(&m)
	if err != nil {
		return err
	}
	c.handleCancel(id, mayPrecede)
	return nil
}

// receiveRelease handles a Release.
func (c *Conn) receiveRelease(m message) error {
	id, count, err := parseRelease(&m)
	if err != nil {
		return err
	}
	return c.decref(id, count)
}

// receiveGoodbye handles a Goodbye: the peer's cause ends the connection.
func (c *Conn) receiveGoodbye(m message) error {
	re, err := parseGoodbye(c, &m)
	if err != nil {
		return err
	}
	c.fail(fmt.Errorf("%w: %w", ErrPeerClosed, re))
	return nil
}

// runningCalls is the table of the peer's calls this side runs, keyed by
// call id, with the cancels that overtook their calls.
type runningCalls struct {
	mu          sync.Mutex
	calls       map[uint64]*callCtx
	earlyCancel map[uint64]time.Time // cancels that overtook their calls, and when they came
	closed      bool                 // the connection ended: no call may start
}

// remove takes a finished call out of the table.
func (r *runningCalls) remove(id uint64) {
	r.mu.Lock()
	delete(r.calls, id)
	r.mu.Unlock()
}

// cancelAll cancels every running handler's context when the connection
// ends, and lets no call start after.
func (r *runningCalls) cancelAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, x := range r.calls {
		x.cancel(context.Canceled, false)
	}
}

// rejection is an error answered to the caller of one call, as opposed
// to a protocol violation, which ends the connection.
type rejection struct{ err error }

// Error returns the rejected call's error text.
func (r rejection) Error() string { return r.err.Error() }

// handleCall decodes a call and starts its handler, or answers at once with
// the reason it cannot run. Arguments are decoded here, in stream order, so
// that a reference to one of our objects is resolved before a later Release
// of it is applied; but only once the target's policy admitted the caller,
// so that a refused call costs nothing and learns nothing.
func (c *Conn) handleCall(m *message, acct *refAccount) error {
	in, err := parseCall(m)
	if err != nil {
		return err
	}
	in.owned = m.owned
	err = c.acceptCall(&in, acct)
	if rj, ok := err.(rejection); ok {
		// A call that cannot run is answered at once; references among its
		// arguments that did not become handles are released by acct.
		if len(c.opts.serverICs) != 0 {
			rj.err = c.interceptRefused(&in, rj.err)
		}
		c.postFail(in.id, rj.err)
		return nil
	}
	return err
}

// acceptCall checks a received call against the running table, its target
// and the target's policy, decodes its arguments and starts it. It returns
// a rejection for a call answered at once, another error for a protocol
// violation.
func (c *Conn) acceptCall(in *callIn, acct *refAccount) error {
	if in.target == 0 && string(in.method) == GoingAwayMethod {
		// Before the limit of calls at once: the notice must not be lost
		// to it, and runs no handler.
		c.peerGoingAway(in.id)
		return nil
	}
	if drop, err := c.checkIn(in.id); drop || err != nil {
		return err
	}
	if in.extErr != nil {
		return rejection{in.extErr}
	}
	if builtin, err := c.startBuiltin(in); builtin {
		return err
	}
	ex := c.lookupExport(in.target)
	if ex == nil {
		return rejection{fmt.Errorf("%w: no object %d was given to you", ErrUnknownReference, in.target)}
	}
	t := c.newInCall(in, ex)
	if err := c.checkPolicy(t, in); err != nil {
		return rejection{err}
	}
	if _, err := in.args.ReadArray(); err != nil {
		return errors.New("malformed call arguments")
	}
	d := decoder{r: in.args, c: c, opaque: ex.proxy != nil, acct: acct, owned: in.owned, imported: t.refInl[:0]}
	var err error
	switch {
	case ex.proxy != nil:
		err = decodeForwarded(t, in, &d)
	case string(in.method) == DescribeMethod:
		err = describeArgs(t, in)
	default:
		err = decodeArgs(t, in, &d)
	}
	if err != nil {
		return rejection{err}
	}
	return c.startCall(t)
}

// startBuiltin starts a call of a built-in method on reference 0, which
// the connection answers whatever its root is, and reports whether in was
// one: the feed call (on every connection) and the health call (on a
// server's).
func (c *Conn) startBuiltin(in *callIn) (bool, error) {
	if in.target != 0 {
		return false, nil
	}
	switch string(in.method) {
	case captable.Method:
		return true, c.startFeedCall(in)
	case HealthMethod:
		if c.srv != nil {
			return true, c.startHealthCall(in)
		}
	}
	return false, nil
}

// checkIn looks a received call's id up in the running table: a call whose
// id is in flight is a violation, one whose cancel overtook it is dropped
// (drop), and one over the limit of calls at once is rejected.
func (c *Conn) checkIn(id uint64) (drop bool, err error) {
	r := &c.running
	r.mu.Lock()
	_, dup := r.calls[id]
	_, cancelled := r.earlyCancel[id]
	delete(r.earlyCancel, id)
	full := len(r.calls) >= c.opts.maxCalls
	r.mu.Unlock()
	switch {
	case dup:
		return false, errDuplicateCall(id)
	case cancelled:
		return true, nil
	case full:
		return false, rejection{fmt.Errorf("%w: at most %d at once", ErrTooManyCalls, c.opts.maxCalls)}
	}
	return false, nil
}

// newInCall makes the incoming call for in on ex, with the context its
// handler runs with.
func (c *Conn) newInCall(in *callIn, ex *export) *inCall {
	t := &inCall{id: in.id, ex: ex, objID: in.target}
	t.cc.c, t.cc.id = c, in.id
	t.ctx = &t.cc
	t.cc.waitLink, t.cc.md, t.nestedIn = in.ext.waitLink, in.ext.md, in.ext.nestedIn
	if chain := in.ext.acting.ids; chain != nil {
		p := c.peer
		p.ForwardedFor = chain
		t.cc.peer, t.cc.hops = p, in.ext.acting.hops
	}
	t.cc.deadline = deadlineOf(in.timeout)
	return t
}

// deadlineOf is the deadline of a call received with timeout nanoseconds
// left, or none for 0.
func deadlineOf(timeout uint64) time.Time {
	if timeout == 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(min(timeout, uint64(1<<62))))
}

// checkPolicy asks whether the caller may make call in on t's target: a
// guarded object's policy decides; an unguarded per-peer root is not lent
// to parties the peer calls for.
func (c *Conn) checkPolicy(t *inCall, in *callIn) error {
	if t.ex.guarded {
		return admit(&t.cc, t.ex.obj, string(in.method))
	}
	if chain := in.ext.acting.ids; chain != nil && c.perPeerRoot {
		return fmt.Errorf("%w: %s is called for %v through %v, but this server gives each peer a root of its own "+
			"(WithRealm) and does not let it be lent: the server can guard the object (remoteable.Guarded) to admit "+
			"calls passed on for others, and a caller acting on its own authority makes the call with "+
			"broker.AsSelf(ctx)", remoteable.ErrAccessDenied, in.method, chain[0], c.peer.Identity())
	}
	return nil
}

// decodeForwarded decodes the arguments of a call to a proxy as generic
// data, to be passed on.
func decodeForwarded(t *inCall, in *callIn, d *decoder) error {
	t.name = string(in.method)
	t.cc.forward = true
	t.args = make([]any, in.argc)
	for i := range t.args {
		var err error
		if t.args[i], err = d.generic(); err != nil {
			d.undo()
			return fmt.Errorf("%w: argument %d: %w", ErrBadArguments, i+1, err)
		}
	}
	t.refs = d.imported
	return nil
}

// describeArgs checks a call of the built-in describe method, which takes
// no arguments.
func describeArgs(t *inCall, in *callIn) error {
	if in.argc != 0 {
		return fmt.Errorf("%w: %s takes no arguments", ErrBadArguments, DescribeMethod)
	}
	t.name = DescribeMethod
	return nil
}

// decodeArgs finds the method a call names and decodes its arguments into
// the method's parameter types.
func decodeArgs(t *inCall, in *callIn, d *decoder) error {
	ex := t.ex
	m := ex.typ.methods[string(in.method)]
	if m == nil {
		return ex.typ.noMethod(ex.obj, string(in.method))
	}
	if lo, hi := m.arity(); in.argc < lo || (hi >= 0 && in.argc > hi) {
		return argCountError(m.name, lo, hi, in.argc)
	}
	t.m = m
	first := t.setInputs(m, in.argc)
	for i := 0; i < in.argc; i++ {
		v, err := t.decodeArg(d, m, i)
		if err != nil {
			d.undo()
			return err
		}
		t.in[first+i] = v
	}
	t.refs = d.imported
	t.attach = d.attach
	return nil
}

// setInputs sizes t's inputs for m with argc arguments, in inline storage
// when they fit, and sets the receiver and the context; it returns where
// the arguments start.
func (t *inCall) setInputs(m *method, argc int) int {
	first := 1
	if m.hasCtx {
		first = 2
	}
	if first+argc <= len(t.inl) {
		t.in = t.inl[:first+argc]
	} else {
		t.in = make([]reflect.Value, first+argc)
	}
	t.in[0] = t.ex.recv
	if m.hasCtx {
		t.in[1] = reflect.ValueOf(&t.ctx).Elem() // already a context.Context: no conversion
	}
	return first
}

// decodeArg decodes argument i of a call of m.
func (t *inCall) decodeArg(d *decoder, m *method, i int) (reflect.Value, error) {
	pi := m.paramInfo(i)
	if refusesNil(pi) {
		if h, err := d.r.PeekHead(); err == nil && h.IsNull() {
			return reflect.Value{}, errNilArgument(i, m.name, pi)
		}
	}
	v := t.slot(i, pi)
	if err := d.value(v, pi); err != nil {
		return reflect.Value{}, fmt.Errorf("%w: argument %d of %s: %w", ErrBadArguments, i+1, m.name, err)
	}
	return v, nil
}

// inCall is one incoming call: its context, its target and its decoded
// arguments, in one allocation.
type inCall struct {
	cc    callCtx
	ctx   context.Context // &cc, boxed once so reflect passes it without copying
	id    uint64
	objID uint64 // the reference id the call is addressed to
	ex    *export
	m     *method // nil for a proxy
	name  string  // a proxy's method name, or a built-in's
	name2 string  // a feed call's token
	// nestedIn is the id of this side's call that the peer made this one
	// from inside (extNestedIn), or 0: a draining server admits it.
	nestedIn uint64
	args     []any  // a proxy's arguments
	refs     []*Ref // handles decoded from the arguments, released if the call never runs
	refInl   [1]*Ref
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
//
// The reader never runs a handler itself, even for a lone caller: a
// handler may block (on a call back to the peer, whose answer this reader
// must read). Handing the reading to a standby goroutine instead, so that
// the handler could start on the reader, was measured first with its
// ceiling (handlers run on the reader, unsafely): the hand-off costs about
// 0.25 µs of a round trip's 40-50 µs, and no benchmark moved beyond the
// noise (docs/benchmarks.md, "One goroutine hand-off fewer").
func (c *Conn) startCall(t *inCall) error {
	r := &c.running
	r.mu.Lock()
	_, dup := r.calls[t.id]
	refused := c.draining.Load() && t.name != HealthMethod && !c.pending.nests(t.nestedIn)
	if r.closed || dup || refused {
		r.mu.Unlock()
		for _, ref := range t.refs {
			ref.Release()
		}
		if dup {
			return errDuplicateCall(t.id)
		}
		if refused && !r.closed {
			return rejection{goingAwayRefusal(t.method())}
		}
		return nil
	}
	r.calls[t.id] = &t.cc
	c.callsIn.Add(1)
	c.answering.Add(1) // under r.mu: see Conn.goAway
	select {
	case c.work <- t:
	default:
		c.handlers.Add(1)
		go c.worker(t)
	}
	r.mu.Unlock()
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
	marks := c.refs.gates.mark(t.ex.obj)
	if len(c.opts.serverICs) == 0 {
		o = c.handle(t)
	} else {
		o = c.interceptRun(t)
	}
	c.refs.gates.wait(t.ctx, marks)
	c.running.remove(t.id)
	c.callsIn.Add(-1)
	unwanted := t.cc.cancelledByPeer()
	t.cc.cancel(context.Canceled, false)
	if !unwanted {
		c.sendResult(t.id, t.method(), &o)
	}
	c.answered()
}

// handle runs a call's handler: its mirrors attached first, then the
// method, the built-in or the proxy it names.
func (c *Conn) handle(t *inCall) (o outcome) {
	switch err := runAttach(t.ctx, t.attach); {
	case err != nil:
		o.err = fmt.Errorf("%w: %w", ErrBadArguments, err)
	case t.m != nil:
		o = c.invoke(t)
	case t.name == captable.Method && t.ex.obj == nil:
		o = c.feedByToken(t)
	case t.name == HealthMethod && t.ex.obj == nil:
		o = c.health()
	case t.ex.proxy != nil:
		o = c.forward(t)
	default:
		o = c.describe(t)
	}
	return o
}

// method is the name of the method t calls, for errors.
func (t *inCall) method() string {
	if t.m != nil {
		return t.m.name
	}
	return t.name
}

// outcome is what a handler produced.
type outcome struct {
	v       reflect.Value // a method's result, typed by ti
	ti      *typeInfo
	generic any // a proxy's result
	feed    any // a feed call's result, sent as a Cacheable
	byRef   bool
	name    string // the registry name a Lookup's result is handed out under (names.go)
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
		o.name = t.lookupName()
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
		d.Interfaces = slices.DeleteFunc(d.Interfaces, func(i InterfaceDescription) bool {
			return slices.ContainsFunc(i.Methods, func(sig string) bool { return admit(t.ctx, t.ex.obj, signatureName(sig)) != nil })
		})
	}
	o.generic = d
	return o
}

// forward passes a call to an object that takes every call through its Call
// method (a proxy for a reference on another connection, say).
func (c *Conn) forward(t *inCall) (o outcome) {
	defer o.recoverPanic(c.opts.tracebacks, t.name)
	o.err = t.ex.proxy.Call(t.ctx, t.name, &o.generic, t.args...)
	o.name = lookupName(t.name, t.args)
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
		if _, ok := d["interfaces"]; ok {
			d["interfaces"] = withoutInterfaces(d["interfaces"], refused)
		}
	case map[any]any:
		d["methods"] = keep(d["methods"])
		if _, ok := d["skipped"]; ok {
			d["skipped"] = keep(d["skipped"])
		}
		if _, ok := d["interfaces"]; ok {
			d["interfaces"] = withoutInterfaces(d["interfaces"], refused)
		}
	}
	return desc
}

// withoutInterfaces drops from a description's interfaces, held as generic
// data, those with a method refused reports: a peer sees an interface
// only when it may call all of it.
func withoutInterfaces(ifaces any, refused func(name string) bool) any {
	list, ok := ifaces.([]any)
	if !ok {
		return ifaces
	}
	return slices.DeleteFunc(slices.Clone(list), func(i any) bool {
		m, _ := i.(map[string]any)
		sigs, _ := m["methods"].([]any)
		return slices.ContainsFunc(sigs, func(sig any) bool {
			s, _ := sig.(string)
			return refused(signatureName(s))
		})
	})
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

// sendResult answers call id, of method, with a handler's outcome.
func (c *Conn) sendResult(id uint64, method string, o *outcome) {
	e := getEncoder(c)
	defer putEncoder(e)
	e.scatter = true // the handler has returned: its result is ours to send
	err := o.err
	if err == nil {
		err = c.encodeReturn(e, id, method, o)
	}
	if err != nil && encodeFail(e, id, err, o.tb) != nil {
		return
	}
	if c.sendFrame(context.Background(), e, false) != nil {
		e.undo()
	}
}

// encodeReturn writes a Return of o's result and checks it against what
// the caller accepts. On error it leaves e empty, with the exports it made
// taken back, and says why method's result cannot be sent.
func (c *Conn) encodeReturn(e *encoder, id uint64, method string, o *outcome) error {
	e.buf = appendReturnHead(e.buf, id)
	e.level = resultLevel
	err := encodeResult(e, o)
	if err == nil && e.bodyLen() > c.peerMax {
		err = fmt.Errorf("%w: the result is %d bytes; the caller accepts %d", ErrMessageTooLarge, e.bodyLen(), c.peerMax)
	}
	if err == nil {
		err = e.checkItems("the result")
	}
	if err == nil {
		return nil
	}
	e.undo()
	e.reset()
	switch {
	case errors.Is(err, errNotUTF8):
		// The handler's value cannot be sent as it is: the caller gets
		// ErrBadReply, and the connection is unharmed.
		err = fmt.Errorf("%w: the result of %s cannot be sent: %w", ErrBadReply, method, err)
	case !errors.Is(err, ErrMessageTooLarge) && !errors.Is(err, ErrTooManyReferences):
		err = fmt.Errorf("tether: cannot send result: %w", inner{err})
	}
	return err
}

// encodeResult encodes o's result, turning a panic in a type's own
// encoder (MarshalCBOR, say) into an error for the caller: it runs on the
// handler's goroutine, after the handler's own recovery, and would take
// the process down.
func encodeResult(e *encoder, o *outcome) (err error) {
	e.exportName = o.name
	defer func() {
		e.exportName = ""
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: encoding the result: %v", ErrPanic, p)
		}
	}()
	return e.result(o)
}

// postFail answers call id with err from a goroutine that must not block.
func (c *Conn) postFail(id uint64, err error) {
	e := getEncoder(c)
	defer putEncoder(e)
	if encodeFail(e, id, err, "") == nil {
		c.out.post(e.frame())
	}
}

// handleCancel cancels the handler of call id, or remembers a cancel that
// may have overtaken its call.
func (c *Conn) handleCancel(id uint64, mayPrecede bool) {
	r := &c.running
	r.mu.Lock()
	defer r.mu.Unlock()
	if x, ok := r.calls[id]; ok {
		x.cancel(context.Canceled, true)
		return
	}
	if !mayPrecede {
		return // the call came on the main stream before its cancel: it is over
	}
	// The call went on a message stream and may still be on its way:
	// remember the cancel until it comes, or until it cannot come any more.
	now := time.Now()
	for old, at := range r.earlyCancel {
		if now.Sub(at) > 2*c.opts.writeTimeout {
			delete(r.earlyCancel, old)
		}
	}
	if len(r.earlyCancel) < c.opts.maxCalls {
		r.earlyCancel[id] = now
	}
}

// handleResult completes the pending call a Return or Fail answers.
func (c *Conn) handleResult(m *message, acct *refAccount) error {
	id, err := parseResult(m)
	if err != nil {
		return err
	}
	cl := c.pending.take(id)
	if cl == nil { // the caller gave up: acct releases the result's references
		return nil
	}
	defer cl.failOnPanic()
	d := decoder{r: m.r, c: c, opaque: cl.opaque, acct: acct, owned: m.owned, imported: cl.refInl[:0]}
	if m.kind == msgFail {
		cl.err = decodeFailure(&d)
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

// failOnPanic answers a call whose result panicked in decoding (a bug in
// a type's own decoder): the call is out of the pending table, so neither
// teardown nor its caller's deadline would reach it. The panic goes on to
// handleFrame, which ends the connection. Deferred directly.
func (cl *call) failOnPanic() {
	if p := recover(); p != nil {
		cl.err = fmt.Errorf("%w: internal error decoding the result of %s: %v", ErrProtocol, cl.method, p)
		cl.done <- struct{}{}
		panic(p)
	}
}

// decodeFailure decodes a Fail's error; a malformed one fails the call
// with ErrProtocol.
func decodeFailure(d *decoder) error {
	re, err := d.wireError()
	if err != nil {
		d.undo()
		return fmt.Errorf("%w: malformed error: %w", ErrProtocol, err)
	}
	return re
}
