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
}

// View is what a local model and a mirror of it have in common: code that
// takes a View reads and watches a model the same way whether it is in this
// process or across the network.
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
}
