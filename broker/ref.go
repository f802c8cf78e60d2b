package broker

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"

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
	// name is the registry name the reference was looked up by (names.go),
	// set before the handle is returned and never changed after.
	name string
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
	// The name is read before the call: args must be dead while the call
	// waits, or a call that waits long (a feed's batch to a silent
	// observer) would keep its arguments from the collector.
	name := lookupName(method, args)
	err := r.c.call(ctx, r.id, r.name, method, reply, args)
	if err == nil && name != "" {
		nameLookedUp(reply, name)
	}
	return err
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
