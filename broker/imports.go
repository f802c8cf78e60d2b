package broker

import "runtime"

// This file holds the import table: for each of the peer's objects this
// side holds handles to, how many references the peer sent and how many
// handles are live, so that the last handle to go tells the peer how many
// references to release (docs/protocol.md §8).

// importEntry counts the handles to one of the peer's objects. The table
// holds entries by value: importing costs no allocation for the entry.
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
	c.refs.mu.Lock()
	defer c.refs.mu.Unlock()
	if c.refs.imports == nil {
		r.released.Store(true)
		return r
	}
	ent := c.refs.imports[id]
	ent.received++
	ent.live++
	c.refs.imports[id] = ent
	r.cleanup = runtime.AddCleanup(r, dropCollected, handleKey{c, id})
	return r
}

// handleKey names a handle's object for its cleanup: a func value and an
// argument of its own, so that arming the cleanup does not also allocate
// a method value.
type handleKey struct {
	c  *Conn
	id uint64
}

// dropCollected is the cleanup of a handle the garbage collector found
// unreachable without its Release.
func dropCollected(k handleKey) { k.c.dropHandle(k.id) }

// dup returns another handle to the object r denotes; the peer is not told.
func (c *Conn) dup(r *Ref) *Ref {
	h := &Ref{c: c, id: r.id, name: r.name}
	if r.id == 0 {
		return h // roots are not counted
	}
	c.refs.mu.Lock()
	defer c.refs.mu.Unlock()
	ent, ok := c.refs.imports[r.id]
	if !ok || r.released.Load() {
		h.released.Store(true)
		return h
	}
	ent.live++
	c.refs.imports[r.id] = ent
	h.cleanup = runtime.AddCleanup(h, dropCollected, handleKey{c, r.id})
	return h
}

// dropHandle runs when a handle is released or collected. The last handle
// to go tells the peer how many references it received.
func (c *Conn) dropHandle(id uint64) {
	c.refs.mu.Lock()
	ent, ok := c.refs.imports[id]
	if !ok {
		c.refs.mu.Unlock()
		return
	}
	ent.live--
	if ent.live > 0 {
		c.refs.imports[id] = ent
		c.refs.mu.Unlock()
		return
	}
	delete(c.refs.imports, id)
	n := ent.received
	c.refs.mu.Unlock()
	c.postRelease(id, n)
}

// postRelease gives the peer back n references to its object id.
func (c *Conn) postRelease(id, n uint64) {
	e := getEncoder(c)
	e.buf = appendRelease(e.buf, id, n)
	c.out.post(e.frame())
	putEncoder(e)
}
