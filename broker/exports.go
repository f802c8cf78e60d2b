package broker

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/tether-go/tether/remoteable"
)

// This file holds the export table: the objects this side handed the peer
// by reference, each under an id of this connection, with how many
// references the peer holds (docs/protocol.md §8). The import table, the
// other half of refTables, is in imports.go.

// refTables are a connection's two reference tables, under one mutex: the
// objects this side exports to the peer and the peer's objects this side
// holds handles to.
type refTables struct {
	mu            sync.Mutex
	exports       map[uint64]*export
	exportIDs     map[any]uint64
	subscriptions int // exports that are subscriptions to this side's models (cacheSubscription)
	nextExport    uint64
	gates         replyGates // exports that hold replies back (read-your-writes, seams.go)
	imports       map[uint64]importEntry
}

// newRefTables returns empty tables.
func newRefTables() refTables {
	return refTables{
		exports:   map[uint64]*export{},
		exportIDs: map[any]uint64{},
		imports:   map[uint64]importEntry{},
	}
}

// exportRoot exports this side's root object under id 0, for good.
func (t *refTables) exportRoot(root any) {
	ex := newExport(root)
	ex.permanent = true
	t.exports[0] = ex
	if isComparable(root) {
		t.exportIDs[exportKey(root)] = 0
	}
}

// close empties the tables, the reply gates among the exports included,
// once the connection is over, returning the exports it held.
func (t *refTables) close() map[uint64]*export {
	t.mu.Lock()
	defer t.mu.Unlock()
	exports := t.exports
	t.exports, t.exportIDs, t.imports = nil, nil, nil
	t.gates.clear()
	return exports
}

// export is an object this side holds for the peer.
type export struct {
	obj       any
	recv      reflect.Value // obj as a method receiver
	count     uint64        // references handed out minus references released
	typ       *objType
	proxy     remoteable.Caller // objects that take every call through Call
	guarded   bool
	permanent bool   // the root
	name      string // the registry name it was handed out under (names.go), or ""
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

// exportKey is what the export table knows obj by: the object itself, or
// for a reference to another connection's object, that object.
func exportKey(obj any) any {
	if r, ok := obj.(*Ref); ok && r.c != nil {
		return proxyKey{r.c, r.id}
	}
	return obj
}

// isComparable reports whether x can key the export table.
func isComparable(x any) bool { return reflect.TypeOf(x).Comparable() }

// export hands obj out by reference, returning its id on this connection.
// The same object keeps the same id for as long as the peer holds it. A
// reference to another connection's object is exported as a proxy that owns
// a handle of its own, so the caller may release theirs. name is the
// registry name a new entry records (Target.Name); an object already
// exported keeps the name it had.
func (c *Conn) export(obj any, name string) (uint64, error) {
	if !isComparable(obj) {
		return 0, fmt.Errorf("cannot send a %T by reference: the type is not comparable", obj)
	}
	key := exportKey(obj)
	_, sub := obj.(cacheSubscription)
	id, found, err := c.reexport(key, sub)
	if found || err != nil {
		return id, err
	}
	// Build the entry outside the lock: the method table may run user code
	// once per type, and a proxy's handle is taken on another connection.
	ex := newExport(obj)
	ex.count, ex.name = 1, name
	return c.addExport(key, ex, sub)
}

// reexport counts one more reference to an object already exported under
// key (found), or checks the quotas and reserves a subscription's place
// for a new export.
func (c *Conn) reexport(key any, sub bool) (id uint64, found bool, err error) {
	t := &c.refs
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.exports == nil {
		return 0, false, c.linkErr(false, ErrClosed)
	}
	if id, ok := t.exportIDs[key]; ok {
		if old := t.exports[id]; !old.permanent {
			old.count++
		}
		return id, true, nil
	}
	if len(t.exports) >= c.opts.maxExports {
		return 0, false, fmt.Errorf("%w: this connection already holds %d objects for the peer", ErrTooManyReferences, c.opts.maxExports)
	}
	if sub && t.subscriptions >= c.opts.maxSubscriptions {
		return 0, false, fmt.Errorf("%w: the peer already holds %d subscriptions to models on this connection (WithMaxSubscriptions raises the limit)",
			ErrTooManyReferences, c.opts.maxSubscriptions)
	}
	if sub {
		t.subscriptions++ // taken now, so that concurrent exports cannot pass the quota
	}
	return 0, false, nil
}

// addExport enters ex under key with a new id, unless another goroutine
// exported the same object meanwhile (then its id counts one more
// reference) or the connection closed.
func (c *Conn) addExport(key any, ex *export, sub bool) (uint64, error) {
	t := &c.refs
	t.mu.Lock()
	if id, ok := t.exportIDs[key]; ok || t.exports == nil { // lost a race, or closed
		if ok {
			t.exports[id].count++
		}
		if sub {
			t.subscriptions--
		}
		t.mu.Unlock()
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
	t.nextExport++
	id := t.nextExport
	t.exports[id] = ex
	t.exportIDs[key] = id
	t.gates.add(id, ex.obj)
	t.mu.Unlock()
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
	c.refs.mu.Lock()
	var gone []*export
	for _, id := range ids {
		if ex, _ := c.refs.dropExport(id, 1); ex != nil {
			gone = append(gone, ex)
		}
	}
	c.refs.mu.Unlock()
	for _, ex := range gone {
		releaseProxy(ex)
	}
}

// dropExport lowers an export's count by n, returning the entry if it went
// and reporting false if n was more than was handed out. t.mu held.
func (t *refTables) dropExport(id, n uint64) (*export, bool) {
	ex := t.exports[id]
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
	delete(t.exports, id)
	delete(t.exportIDs, exportKey(ex.obj))
	t.gates.remove(id)
	if _, ok := ex.obj.(cacheSubscription); ok {
		t.subscriptions--
	}
	return ex, true
}

// decref applies the peer's release of n references to id. Releasing what
// was never handed out is a protocol violation.
func (c *Conn) decref(id, n uint64) error {
	c.refs.mu.Lock()
	if c.refs.exports == nil {
		c.refs.mu.Unlock()
		return nil
	}
	var gone *export
	ok := n > 0 && id != 0
	if ok {
		gone, ok = c.refs.dropExport(id, n)
	}
	c.refs.mu.Unlock()
	if gone != nil {
		releaseProxy(gone)
	}
	if !ok {
		return fmt.Errorf("release of %d reference(s) to object %d that were never handed out", n, id)
	}
	return nil
}

// lookupExport returns the export under id, or nil.
func (c *Conn) lookupExport(id uint64) *export {
	c.refs.mu.Lock()
	defer c.refs.mu.Unlock()
	return c.refs.exports[id]
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
