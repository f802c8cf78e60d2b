package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/linkwait"
	"github.com/tether-go/tether/remoteable"
)

// Ref is a reference to an object: usually one the peer exported over a
// connection, whose methods Call invokes remotely; sometimes (when a
// reference to one of this process's own objects comes back) a local object,
// whose methods Call invokes directly.
//
// Every reference received is a handle of its own: receiving the same remote
// object twice gives two *Ref values (Same reports that they denote one
// object), and each holder releases its own. The exporter drops the object
// once every handle on the connection has been released. Release handles
// when done; a handle that becomes unreachable is released automatically,
// but not promptly. A Ref is safe for concurrent use.
type Ref struct {
	c        *Conn
	id       uint64
	obj      any // a local object, when c is nil
	released atomic.Bool
	cleanup  runtime.Cleanup
	// cacheable marks a reference to a model's feed: it arrived as a
	// Cacheable and is sent on as one.
	cacheable bool
}

var _ remoteable.Caller = (*Ref)(nil)

// localRef wraps a local object as a Ref.
func localRef(obj any) *Ref {
	if r, ok := obj.(*Ref); ok {
		return r
	}
	return &Ref{obj: obj}
}

// Call invokes method on the referenced object with args and decodes its
// result into reply, a non-nil pointer (or nil to ignore the result). As
// with encoding/json, a byte slice the reply already holds is reused when it
// has room for the result. On a local object (one that came home) a call
// made with a handler's context is checked against the object's access
// policy for the handler's caller, as the caller's own call would be.
//
// The caller's deadline travels with the call, and cancelling ctx cancels the
// handler's context on the far side; Call then returns ctx.Err() at once.
// Errors the far side returned are *RemoteError values that unwrap to
// registered errors; a call whose connection died fails with an error
// matching ErrDeadReference (and ErrConnectionLost if it had been sent).
// An argument that is a released reference, or one whose own connection
// died, fails the call with ErrReleased or ErrDeadReference before anything
// is sent; an argument that is an error travels as an error (see
// docs/protocol.md, "Values").
func (r *Ref) Call(ctx context.Context, method string, reply any, args ...any) error {
	if r.c == nil {
		return localCall(ctx, r.obj, method, reply, args)
	}
	if r.released.Load() {
		return fmt.Errorf("%w: %s", ErrReleased, method)
	}
	// Until the call is over the handle must stay reachable, or the garbage
	// collector could release it while the call is on its way (a Release on
	// the main stream can overtake a call on a message stream).
	defer runtime.KeepAlive(r)
	return r.c.call(ctx, r.id, method, reply, args)
}

// Release gives the handle back: the exporter drops the object once every
// handle to it on this connection has been released. Later calls on this
// handle fail with ErrReleased; other handles are not affected. Release is
// idempotent; it is a no-op for a root reference and for a local object.
func (r *Ref) Release() {
	if r.c == nil || r.id == 0 || r.released.Swap(true) {
		return
	}
	r.cleanup.Stop()
	r.c.dropHandle(r.id)
}

// Same reports whether r and o denote the same object.
func (r *Ref) Same(o *Ref) bool {
	if r == nil || o == nil {
		return r == o
	}
	if r.c == nil || o.c == nil {
		return r.c == o.c && r.obj == o.obj
	}
	return r.c == o.c && r.id == o.id
}

// Cacheable reports whether the reference is to an observable model's feed
// (it arrived as a Cacheable, see remoteable.Cacheable). Such a reference is
// sent on as a Cacheable, so that the next hop can mirror the model; decode
// it into a *cache.Mirror to get the mirror directly.
func (r *Ref) Cacheable() bool { return r.cacheable }

// Conn returns the connection the reference lives on, or nil for a local
// object.
func (r *Ref) Conn() *Conn { return r.c }

// Local returns the object when the reference is to an object of this
// process (one that came back home).
func (r *Ref) Local() (any, bool) { return r.obj, r.c == nil }

// String describes the reference for logs.
func (r *Ref) String() string {
	if r.c == nil {
		return fmt.Sprintf("tether.Ref(local %T)", r.obj)
	}
	return fmt.Sprintf("tether.Ref(%s#%d)", r.c.peer.Name, r.id)
}

// call is one outgoing call waiting for its result.
type call struct {
	method string // for the error of a call whose connection died
	reply  any
	opaque bool
	err    error
	attach []attachTask  // mirrors in the reply, attached by the caller
	done   chan struct{} // receives exactly once per use
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

func (c *Conn) call(ctx context.Context, target uint64, method string, reply any, args []any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var timeout uint64
	if dl, ok := ctx.Deadline(); ok {
		d := time.Until(dl)
		if d <= 0 {
			return context.DeadlineExceeded
		}
		timeout = uint64(d)
	}
	if err := checkReply(reply); err != nil {
		return err
	}
	acting, err := c.forwardedFor(ctx, method)
	if err != nil {
		return err
	}
	// The caller's wish to wait for links travels with the call, as its
	// deadline does, so that a relay passing it on waits for its own link.
	ext := callExt{acting: acting, waitLink: linkwait.Wanted(ctx)}
	cl := callPool.Get().(*call)
	cl.method, cl.reply, cl.err, cl.opaque = method, reply, nil, false
	if _, ok := reply.(*any); ok && (forwarding(ctx) || ctx.Value(rawKey{}) != nil) {
		cl.opaque = true
	}
	c.pmu.Lock()
	if c.pclosed {
		c.pmu.Unlock()
		cl.reply = nil
		callPool.Put(cl)
		return named(c.deadErr(), method)
	}
	c.nextCall++
	id := c.nextCall
	c.pending[id] = cl
	c.pmu.Unlock()
	c.callsOut.Add(1)
	defer c.callsOut.Add(-1)

	e := getEncoder(c)
	if !ext.empty() {
		e.buf = cborx.AppendArray(e.buf, 7)
	} else {
		e.buf = cborx.AppendArray(e.buf, 6)
	}
	e.buf = cborx.AppendUint(e.buf, msgCall)
	e.buf = cborx.AppendUint(e.buf, id)
	e.buf = cborx.AppendUint(e.buf, target)
	e.buf = cborx.AppendText(e.buf, method)
	e.buf = cborx.AppendUint(e.buf, timeout)
	e.buf = cborx.AppendArray(e.buf, len(args))
	e.level = callArgLevel
	for i, a := range args {
		if err = e.any(a); err != nil {
			if s := argSentinel(err); s != nil {
				err = within(err, s, fmt.Sprintf("argument %d of %s", i+1, method))
			} else {
				err = fmt.Errorf("%w: argument %d of %s: %w", ErrBadArguments, i+1, method, err)
			}
			break
		}
	}
	if err == nil && !ext.empty() {
		e.buf = appendCallExt(e.buf, ext)
	}
	if err == nil && e.bodyLen() > c.peerMax {
		err = fmt.Errorf("%w: the call is %d bytes; the peer accepts %d", ErrMessageTooLarge, e.bodyLen(), c.peerMax)
	}
	if err == nil {
		err = e.checkItems("the call")
	}
	bulk := false
	if err == nil {
		bulk = c.onMessageStream(e)
		err = c.sendFrame(ctx, e)
	}
	if err != nil {
		e.undo()
		putEncoder(e)
		c.abandon(id, cl)
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
	putEncoder(e)

	select {
	case <-cl.done:
	case <-ctx.Done():
		if c.abandon(id, cl) {
			c.postCancel(id, bulk)
			return ctx.Err()
		}
		// The result arrived as we gave up: use it.
	}
	err, attach := cl.err, cl.attach
	cl.reply, cl.err, cl.attach = nil, nil, nil
	callPool.Put(cl)
	if err == nil && len(attach) > 0 {
		err = runAttach(ctx, attach)
	}
	return err
}

// argSentinel returns the sentinel an argument's encoding error keeps as
// it is, rather than being reported as ErrBadArguments: the argument was
// well formed, but a limit or the state of a reference stops it.
func argSentinel(err error) error {
	for _, s := range []error{ErrTooManyReferences, ErrReleased, ErrDeadReference, ErrTooDeep} {
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
	c.pmu.Lock()
	mine := c.pending[id] == cl
	if mine {
		delete(c.pending, id)
	}
	c.pmu.Unlock()
	if !mine {
		<-cl.done
		return false
	}
	cl.reply, cl.err = nil, nil
	callPool.Put(cl)
	return true
}

// postCancel tells the callee to give up on call id. mayPrecede says the call
// went on a message stream, so the cancel may arrive before it.
func (c *Conn) postCancel(id uint64, mayPrecede bool) {
	e := getEncoder(c)
	e.buf = cborx.AppendArray(e.buf, 3)
	e.buf = cborx.AppendUint(e.buf, msgCancel)
	e.buf = cborx.AppendUint(e.buf, id)
	e.buf = cborx.AppendBool(e.buf, mayPrecede)
	c.out.post(e.frame())
	putEncoder(e)
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

// export is an object this side holds for the peer.
type export struct {
	obj       any
	recv      reflect.Value // obj as a method receiver
	count     uint64        // references handed out minus references released
	typ       *objType
	proxy     remoteable.Caller // objects that take every call through Call
	guarded   bool
	permanent bool // the root
}

// newExport describes obj as an export. A reference to another connection's
// object becomes a proxy owning a handle of its own; an object that takes
// every call through Call is a proxy too; anything else gets its method
// table.
func newExport(obj any) *export {
	ex := &export{obj: obj}
	if r, ok := obj.(*Ref); ok && r.c != nil {
		h := r.c.dup(r)
		ex.obj, ex.proxy = h, h
	} else if ot := objTypeOf(obj); ot.forwards {
		ex.proxy = obj.(remoteable.Caller)
		ex.guarded = ot.guarded
	} else {
		ex.typ = ot
		ex.guarded = ot.guarded
		ex.recv = reflect.ValueOf(obj)
	}
	return ex
}

// proxyKey identifies a reference to another connection's object, so that
// every handle to it is exported under one id.
type proxyKey struct {
	c  *Conn
	id uint64
}

func exportKey(obj any) any {
	if r, ok := obj.(*Ref); ok && r.c != nil {
		return proxyKey{r.c, r.id}
	}
	return obj
}

func isComparable(x any) bool { return reflect.TypeOf(x).Comparable() }

// export hands obj out by reference, returning its id on this connection.
// The same object keeps the same id for as long as the peer holds it. A
// reference to another connection's object is exported as a proxy that owns
// a handle of its own, so the caller may release theirs.
func (c *Conn) export(obj any) (uint64, error) {
	if !isComparable(obj) {
		return 0, fmt.Errorf("cannot send a %T by reference: the type is not comparable", obj)
	}
	key := exportKey(obj)
	_, sub := obj.(cacheSubscription)
	c.rmu.Lock()
	if c.exports == nil {
		c.rmu.Unlock()
		return 0, c.linkErr(false, ErrClosed)
	}
	if id, ok := c.exportIDs[key]; ok {
		if old := c.exports[id]; !old.permanent {
			old.count++
		}
		c.rmu.Unlock()
		return id, nil
	}
	full := len(c.exports) >= c.opts.maxExports
	subsFull := !full && sub && c.subscriptions >= c.opts.maxSubscriptions
	if sub && !full && !subsFull {
		c.subscriptions++ // taken now, so that concurrent exports cannot pass the quota
	}
	c.rmu.Unlock()
	if full {
		return 0, fmt.Errorf("%w: this connection already holds %d objects for the peer", ErrTooManyReferences, c.opts.maxExports)
	}
	if subsFull {
		return 0, fmt.Errorf("%w: the peer already holds %d subscriptions to models on this connection (WithMaxSubscriptions raises the limit)",
			ErrTooManyReferences, c.opts.maxSubscriptions)
	}

	// Build the entry outside the lock: the method table may run user code
	// once per type, and a proxy's handle is taken on another connection.
	ex := newExport(obj)
	ex.count = 1

	c.rmu.Lock()
	if id, ok := c.exportIDs[key]; ok || c.exports == nil { // lost a race, or closed
		if ok {
			c.exports[id].count++
		}
		if sub {
			c.subscriptions--
		}
		c.rmu.Unlock()
		// Only the proxy's own handle goes: the object was never told it
		// was exported (Exported), so it must not be told it went.
		if r, isRef := ex.obj.(*Ref); isRef && ex.proxy != nil {
			r.Release()
		}
		if !ok {
			return 0, c.linkErr(false, ErrClosed)
		}
		return id, nil
	}
	c.nextExport++
	id := c.nextExport
	c.exports[id] = ex
	c.exportIDs[key] = id
	c.gates.add(id, obj)
	c.rmu.Unlock()
	if o, ok := ex.obj.(remoteable.ExportObserver); ok {
		o.Exported()
	}
	return id, nil
}

// releaseProxy runs when an export entry goes: a proxy's own handle is
// released, and an object that observes its exports is told.
func releaseProxy(ex *export) {
	if r, ok := ex.obj.(*Ref); ok && ex.proxy != nil {
		r.Release()
	}
	if o, ok := ex.obj.(remoteable.ExportObserver); ok {
		o.Unexported()
	}
}

// unexport takes back exports made for a message that was never sent.
func (c *Conn) unexport(ids []uint64) {
	c.rmu.Lock()
	var gone []*export
	for _, id := range ids {
		if ex, _ := c.dropExport(id, 1); ex != nil {
			gone = append(gone, ex)
		}
	}
	c.rmu.Unlock()
	for _, ex := range gone {
		releaseProxy(ex)
	}
}

// dropExport lowers an export's count by n, returning the entry if it went
// and reporting false if n was more than was handed out. c.rmu held.
func (c *Conn) dropExport(id, n uint64) (*export, bool) {
	ex := c.exports[id]
	if ex == nil || n > ex.count {
		return nil, false
	}
	if ex.permanent {
		return nil, true
	}
	ex.count -= n
	if ex.count > 0 {
		return nil, true
	}
	delete(c.exports, id)
	delete(c.exportIDs, exportKey(ex.obj))
	c.gates.remove(id)
	if _, ok := ex.obj.(cacheSubscription); ok {
		c.subscriptions--
	}
	return ex, true
}

// decref applies the peer's release of n references to id. Releasing what
// was never handed out is a protocol violation.
func (c *Conn) decref(id, n uint64) error {
	c.rmu.Lock()
	if c.exports == nil {
		c.rmu.Unlock()
		return nil
	}
	var gone *export
	ok := n > 0 && id != 0
	if ok {
		gone, ok = c.dropExport(id, n)
	}
	c.rmu.Unlock()
	if gone != nil {
		releaseProxy(gone)
	}
	if !ok {
		return fmt.Errorf("release of %d reference(s) to object %d that were never handed out", n, id)
	}
	return nil
}

func (c *Conn) lookupExport(id uint64) *export {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.exports[id]
}

// homecoming returns what a reference to this side's export id decodes to:
// the object itself, or a fresh handle when the export is a proxy (the
// export keeps its own).
func (c *Conn) homecoming(id uint64) (any, bool) {
	ex := c.lookupExport(id)
	if ex == nil {
		return nil, false
	}
	if r, ok := ex.obj.(*Ref); ok && ex.proxy != nil {
		return r.c.dup(r), true
	}
	return ex.obj, true
}

// importEntry counts the handles to one of the peer's objects.
type importEntry struct {
	received uint64 // references the peer sent and this side has not released
	live     uint64 // handles not yet released
}

// importRef returns a new handle to the peer's object id: one more
// reference received.
func (c *Conn) importRef(id uint64) *Ref {
	r := &Ref{c: c, id: id}
	if id == 0 {
		return r // the peer's root: permanent, never counted or released
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.imports == nil {
		r.released.Store(true)
		return r
	}
	ent := c.imports[id]
	if ent == nil {
		ent = &importEntry{}
		c.imports[id] = ent
	}
	ent.received++
	ent.live++
	r.cleanup = runtime.AddCleanup(r, c.dropHandle, id)
	return r
}

// dup returns another handle to the object r denotes; the peer is not told.
func (c *Conn) dup(r *Ref) *Ref {
	h := &Ref{c: c, id: r.id}
	if r.id == 0 {
		return h // roots are not counted
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	ent := c.imports[r.id]
	if ent == nil || r.released.Load() {
		h.released.Store(true)
		return h
	}
	ent.live++
	h.cleanup = runtime.AddCleanup(h, c.dropHandle, r.id)
	return h
}

// dropHandle runs when a handle is released or collected. The last handle
// to go tells the peer how many references it received.
func (c *Conn) dropHandle(id uint64) {
	c.rmu.Lock()
	ent := c.imports[id]
	if ent == nil {
		c.rmu.Unlock()
		return
	}
	ent.live--
	if ent.live > 0 {
		c.rmu.Unlock()
		return
	}
	delete(c.imports, id)
	n := ent.received
	c.rmu.Unlock()
	c.postRelease(id, n)
}

func (c *Conn) postRelease(id, n uint64) {
	e := getEncoder(c)
	e.buf = cborx.AppendArray(e.buf, 3)
	e.buf = cborx.AppendUint(e.buf, msgRelease)
	e.buf = cborx.AppendUint(e.buf, id)
	e.buf = cborx.AppendUint(e.buf, n)
	c.out.post(e.frame())
	putEncoder(e)
}

// localCall invokes a method on an object of this process, converting
// nothing: arguments must be assignable to the parameters. Made with a
// handler's context (and not AsSelf), the call acts for the handler's
// caller, so a guarded object's policy judges that caller as it would its
// own call: a peer cannot have a handler call, on its behalf, an object it
// may not call itself by handing the handler a reference to it.
func localCall(ctx context.Context, obj any, method string, reply any, args []any) (err error) {
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
	if lo, hi := m.arity(); len(args) < lo || (hi >= 0 && len(args) > hi) {
		return argCountError(method, lo, hi, len(args))
	}
	in := []reflect.Value{reflect.ValueOf(obj)}
	if m.hasCtx {
		in = append(in, reflect.ValueOf(&ctx).Elem())
	}
	for i, a := range args {
		pi := m.paramInfo(i)
		pt := pi.t
		if refusesNil(pi) && (a == nil || a == any((*Ref)(nil))) {
			return errNilArgument(i, method, pi)
		}
		if a == nil {
			in = append(in, reflect.Zero(pt))
			continue
		}
		av := reflect.ValueOf(a)
		if !av.Type().AssignableTo(pt) {
			return fmt.Errorf("%w: argument %d of %s: %T is not %v", ErrBadArguments, i+1, method, a, pt)
		}
		in = append(in, av)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v", ErrPanic, method, p)
		}
	}()
	out := m.fn.Call(in)
	if e := out[len(out)-1]; !e.IsNil() {
		return e.Interface().(error)
	}
	if m.result == nil || reply == nil {
		return nil
	}
	rv := reflect.ValueOf(reply).Elem()
	if !out[0].Type().AssignableTo(rv.Type()) {
		return fmt.Errorf("%w: %s returns %v, reply is %v", ErrBadReply, method, out[0].Type(), rv.Type())
	}
	rv.Set(out[0])
	return nil
}
