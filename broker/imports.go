package broker

import "runtime"

// This file holds the import table: for each of the peer's objects this
// side holds handles to, how many references the peer sent and how many
// handles are live, so that the last handle to go tells the peer how many
// references to release (docs/protocol.md §8).

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
	c.refs.mu.Lock()
	defer c.refs.mu.Unlock()
	if c.refs.imports == nil {
		r.released.Store(true)
		return r
	}
	ent := c.refs.imports[id]
	if ent == nil {
		ent = &importEntry{}
		c.refs.imports[id] = ent
	}
	ent.received++
	ent.live++
	r.cleanup = runtime.AddCleanup(r, c.dropHandle, id)
	return r
}

// dup returns another handle to the object r denotes; the peer is not told.
func (c *Conn) dup(r *Ref) *Ref {
	h := &Ref{c: c, id: r.id, name: r.name}
	if r.id == 0 {
		return h // roots are not counted
	}
	c.refs.mu.Lock()
	defer c.refs.mu.Unlock()
	ent := c.refs.imports[r.id]
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
	c.refs.mu.Lock()
	ent := c.refs.imports[id]
	if ent == nil {
		c.refs.mu.Unlock()
		return
	}
	ent.live--
	if ent.live > 0 {
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
