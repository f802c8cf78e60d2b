package cache

import "github.com/tether-go/tether/signals"

// Change is one change to a model as its watchers see it.
type Change[K comparable, V any] struct {
	// Key is the entry that changed.
	Key K
	// Value is the entry's new value or, when Deleted, the value it had.
	Value V
	// Deleted reports that the entry was removed.
	Deleted bool
	// Version is the model's version once the change is applied. Changes
	// that a mirror computed from a snapshot (after an outage) all carry
	// the snapshot's version.
	Version uint64
	// Merged reports that the event stands for more than one change, or
	// for changes the watchers were not shown one by one: Value is then
	// the entry's state at Version, and the events before and after it
	// need not have consecutive versions. It happens only when the
	// watchers fell behind (more events waited for them than the model's
	// or mirror's queue size, WithQueueSize, when a change or a batch of
	// changes came: see MergedChanges), or when a mirror computed the
	// event from a snapshot (its first, or after an outage it could not
	// resume from the log). Every other event is exactly one change, its
	// Version one more than the previous event's.
	Merged bool
}

// View is what a local model and a mirror of it have in common: code that
// takes a View reads and watches a model the same way whether it is in this
// process or across the network.
//
// A View has no Close: the View of a local model is the model itself, which
// whoever holds the View must not end. A mirror received as a View is
// released when it is dropped (by the garbage collector), or at once by
// closing it: if c, ok := v.(io.Closer); ok { c.Close() } (a mirror is an
// io.Closer; a local model is not, and there is nothing to release).
type View[K comparable, V any] interface {
	// Get returns the value of key.
	Get(key K) (V, bool)
	// Len returns the number of entries.
	Len() int
	// Version returns the version of the state.
	Version() uint64
	// Range calls fn for every entry until fn returns false.
	Range(fn func(key K, value V) bool)
	// Stale reports whether the state may be behind the model's (always
	// false for the model itself).
	Stale() bool
	// Changes returns the Changed signal.
	Changes() *signals.Signal[Change[K, V]]
	// StaleChanges returns the signal that fires true when the state may
	// fall behind the model's and false when it is in sync again (a
	// mirror's StaleChanged; the model's own never fires).
	StaleChanges() *signals.Signal[bool]
	// Err returns why a mirror cannot follow its model (an error matching
	// ErrSourceLost once it never will again), or nil; always nil for the
	// model itself.
	Err() error
}
