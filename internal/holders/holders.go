package holders

import "sync/atomic"

// Count implements remoteable.ExportObserver by counting the connections
// that hold the object, and runs a function when the last one lets go. Its
// zero value counts and runs nothing.
type Count struct {
	n      atomic.Int32
	onLast func()
}

// OnLast sets fn to run whenever the last holder of the object c counts
// for lets it go. It must be called before the object is first exported.
// It is a function, not a method, so that a type embedding Count does not
// get it in its method set: only Exported and Unexported are promoted.
func OnLast(c *Count, fn func()) { c.onLast = fn }

// Exported counts a connection that now holds the object for its peer.
func (c *Count) Exported() { c.n.Add(1) }

// Unexported counts a connection that let the object go.
func (c *Count) Unexported() {
	if c.n.Add(-1) == 0 && c.onLast != nil {
		c.onLast()
	}
}
