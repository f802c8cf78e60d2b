package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// Ref is a reference to an object: usually one the peer exported over a
// connection, whose methods Call invokes remotely; sometimes (when a
// reference to one of this process's own objects comes back) a local object,
// whose methods Call invokes directly.
//
// Receiving the same remote object twice on a connection yields the same
// *Ref while it is held. Release it when done; a Ref that becomes unreachable
// is released automatically, but not promptly. A Ref is safe for concurrent
// use.
type Ref struct {
	c        *Conn
	id       uint64
	gen      uint64
	obj      any // a local object, when c is nil
	released atomic.Bool
	cleanup  runtime.Cleanup
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
// result into reply, a non-nil pointer (or nil to ignore the result).
//
// The caller's deadline travels with the call, and cancelling ctx cancels the
// handler's context on the far side; Call then returns ctx.Err() at once.
// Errors the far side returned are *RemoteError values that unwrap to
// registered errors; a call whose connection died fails with an error
// matching ErrDeadReference (and ErrConnectionLost if it had been sent).
func (r *Ref) Call(ctx context.Context, method string, reply any, args ...any) error {
	if r.c == nil {
		return localCall(ctx, r.obj, method, reply, args)
	}
	if r.released.Load() {
		return fmt.Errorf("%w: %s", ErrReleased, method)
	}
	return r.c.call(ctx, r.id, method, reply, args)
}

// Release gives the reference back: the exporter drops the object once every
// reference it handed out on this connection has been released. Later calls
// fail with ErrReleased. Release is idempotent; it is a no-op for a root
// reference and for a local object.
func (r *Ref) Release() {
	if r.c == nil || r.id == 0 || r.released.Swap(true) {
		return
	}
	r.cleanup.Stop()
	r.c.releaseRef(r.id, r.gen)
}

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
	reply  any
	opaque bool
	err    error
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
	cl := callPool.Get().(*call)
	cl.reply, cl.err, cl.opaque = reply, nil, false
	if _, ok := reply.(*any); ok && forwarding(ctx) {
		cl.opaque = true
	}
	c.pmu.Lock()
	if c.pclosed {
		c.pmu.Unlock()
		cl.reply = nil
		callPool.Put(cl)
		return c.deadErr()
	}
	c.nextCall++
	id := c.nextCall
	c.pending[id] = cl
	c.pmu.Unlock()
	c.callsOut.Add(1)
	defer c.callsOut.Add(-1)

	e := getEncoder(c)
	e.buf = cborx.AppendArray(e.buf, 6)
	e.buf = cborx.AppendUint(e.buf, msgCall)
	e.buf = cborx.AppendUint(e.buf, id)
	e.buf = cborx.AppendUint(e.buf, target)
	e.buf = cborx.AppendText(e.buf, method)
	e.buf = cborx.AppendUint(e.buf, timeout)
	e.buf = cborx.AppendArray(e.buf, len(args))
	var err error
	for i, a := range args {
		if err = e.any(a); err != nil {
			if errors.Is(err, ErrTooManyReferences) || errors.Is(err, ErrReleased) {
				err = fmt.Errorf("argument %d of %s: %w", i+1, method, err)
			} else {
				err = fmt.Errorf("%w: argument %d of %s: %w", ErrBadArguments, i+1, method, err)
			}
			break
		}
	}
	if err == nil && e.bodyLen() > c.peerMax {
		err = fmt.Errorf("%w: the call is %d bytes; the peer accepts %d", ErrMessageTooLarge, e.bodyLen(), c.peerMax)
	}
	if err == nil {
		err = c.sendFrame(ctx, e)
	}
	if err != nil {
		e.undo()
		putEncoder(e)
		c.abandon(id, cl)
		return err
	}
	putEncoder(e)

	select {
	case <-cl.done:
	case <-ctx.Done():
		if c.abandon(id, cl) {
			c.postCancel(id)
			return ctx.Err()
		}
		// The result arrived as we gave up: use it.
	}
	err = cl.err
	cl.reply, cl.err = nil, nil
	callPool.Put(cl)
	return err
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

func (c *Conn) postCancel(id uint64) {
	e := getEncoder(c)
	e.buf = cborx.AppendArray(e.buf, 2)
	e.buf = cborx.AppendUint(e.buf, msgCancel)
	e.buf = cborx.AppendUint(e.buf, id)
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

// reply decodes a result into reply, with fast paths for common types.
func (d *decoder) reply(reply any) error {
	switch p := reply.(type) {
	case *any:
		x, err := d.generic()
		if err == nil {
			*p = x
		}
		return err
	case *[]byte, *string, *int, *int64, *bool, *float64:
		v := reflect.ValueOf(reply).Elem()
		return d.value(v, infoOf(v.Type()))
	}
	v := reflect.ValueOf(reply).Elem()
	return d.value(v, infoOf(v.Type()))
}

// export is an object this side holds for the peer.
type export struct {
	obj       any
	count     uint64 // references handed out minus references released
	typ       *objType
	proxy     remoteable.Caller // objects that take every call through Call
	guarded   bool
	permanent bool // the root
}

func isComparable(x any) bool { return reflect.TypeOf(x).Comparable() }

// export hands obj out by reference, returning its id on this connection.
// The same object keeps the same id for as long as the peer holds it.
func (c *Conn) export(obj any) (uint64, error) {
	if !isComparable(obj) {
		return 0, fmt.Errorf("cannot send a %T by reference: the type is not comparable", obj)
	}
	ex := &export{obj: obj, count: 1}
	if p, ok := obj.(remoteable.Caller); ok {
		ex.proxy = p
		_, ex.guarded = obj.(remoteable.Guarded)
	} else {
		ex.typ = objTypeOf(obj) // outside the lock: may run user code once per type
		ex.guarded = ex.typ.guarded
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.exports == nil {
		return 0, &linkError{cause: ErrClosed}
	}
	if id, ok := c.exportIDs[obj]; ok {
		if old := c.exports[id]; !old.permanent {
			old.count++
		}
		return id, nil
	}
	if len(c.exports) >= c.opts.maxExports {
		return 0, fmt.Errorf("%w: this connection already holds %d objects for the peer", ErrTooManyReferences, len(c.exports))
	}
	c.nextExport++
	id := c.nextExport
	c.exports[id] = ex
	c.exportIDs[obj] = id
	return id, nil
}

// unexport takes back exports made for a message that was never sent.
func (c *Conn) unexport(ids []uint64) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for _, id := range ids {
		c.dropExport(id, 1)
	}
}

// dropExport lowers an export's count by n. c.rmu held.
func (c *Conn) dropExport(id, n uint64) bool {
	ex := c.exports[id]
	if ex == nil || n > ex.count {
		return false
	}
	if ex.permanent {
		return true
	}
	ex.count -= n
	if ex.count == 0 {
		delete(c.exports, id)
		delete(c.exportIDs, ex.obj)
	}
	return true
}

// decref applies the peer's release of n references to id. Releasing what
// was never handed out is a protocol violation.
func (c *Conn) decref(id, n uint64) error {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.exports == nil {
		return nil
	}
	if n == 0 || id == 0 || !c.dropExport(id, n) {
		return fmt.Errorf("release of %d reference(s) to object %d that were never handed out", n, id)
	}
	return nil
}

func (c *Conn) lookupExport(id uint64) *export {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.exports[id]
}

// exported returns the object behind one of this side's export ids.
func (c *Conn) exported(id uint64) (any, bool) {
	if ex := c.lookupExport(id); ex != nil {
		return ex.obj, true
	}
	return nil, false
}

// importEntry tracks references to one of the peer's objects.
type importEntry struct {
	ref   weak.Pointer[Ref]
	count uint64 // references received and not yet released
	gen   uint64 // generation of the *Ref that owns the count
}

type refKey struct{ id, gen uint64 }

// importRef returns the *Ref for the peer's object id, counting one more
// reference received.
func (c *Conn) importRef(id uint64) *Ref {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.imports == nil {
		r := &Ref{c: c, id: id}
		r.released.Store(true)
		return r
	}
	ent := c.imports[id]
	if ent == nil {
		ent = &importEntry{}
		c.imports[id] = ent
	} else if r := ent.ref.Value(); r != nil {
		ent.count++
		return r
	}
	// A new *Ref takes over the whole count; a collected predecessor whose
	// cleanup has not run yet sees a different generation and does nothing.
	ent.count++
	c.nextGen++
	r := &Ref{c: c, id: id, gen: c.nextGen}
	ent.ref, ent.gen = weak.Make(r), r.gen
	r.cleanup = runtime.AddCleanup(r, c.refCollected, refKey{id, r.gen})
	return r
}

// refCollected runs when a *Ref became unreachable without Release.
func (c *Conn) refCollected(k refKey) { c.releaseRef(k.id, k.gen) }

func (c *Conn) releaseRef(id, gen uint64) {
	c.rmu.Lock()
	ent := c.imports[id]
	if ent == nil || ent.gen != gen {
		c.rmu.Unlock()
		return
	}
	delete(c.imports, id)
	n := ent.count
	c.rmu.Unlock()
	c.postRelease(id, n)
}

// releaseImports gives back one reference per id: a message carrying them
// was dropped before its values were used.
func (c *Conn) releaseImports(ids []uint64) {
	c.rmu.Lock()
	counts := map[uint64]uint64{}
	for _, id := range ids {
		ent := c.imports[id]
		if ent == nil {
			continue
		}
		ent.count--
		counts[id]++
		if ent.count == 0 {
			delete(c.imports, id)
		}
	}
	c.rmu.Unlock()
	for id, n := range counts {
		c.postRelease(id, n)
	}
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
// nothing: arguments must be assignable to the parameters.
func localCall(ctx context.Context, obj any, method string, reply any, args []any) (err error) {
	if p, ok := obj.(remoteable.Caller); ok {
		return p.Call(ctx, method, reply, args...)
	}
	if err := checkReply(reply); err != nil {
		return err
	}
	m := objTypeOf(obj).methods[method]
	if m == nil {
		return fmt.Errorf("%w: %T has no remote method %q", ErrUnknownMethod, obj, method)
	}
	if lo, hi := m.arity(); len(args) < lo || (hi >= 0 && len(args) > hi) {
		return fmt.Errorf("%w: %s takes %d argument(s), got %d", ErrBadArguments, method, lo, len(args))
	}
	in := []reflect.Value{reflect.ValueOf(obj)}
	if m.hasCtx {
		in = append(in, reflect.ValueOf(&ctx).Elem())
	}
	for i, a := range args {
		pt := m.paramInfo(i).t
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
			err = fmt.Errorf("%w: %v", ErrPanic, p)
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
