package cache

import "sync"

// entryTable is the state a Map and a Mirror both keep: the typed entries,
// under the lock that also orders their changes (and guards what the model
// keeps in step with them). Reading a model is this one piece of code,
// whether the model is local or remote.
type entryTable[K comparable, V any] struct {
	mu    sync.RWMutex
	items map[K]slot[V]
}

// get returns the value of key.
func (e *entryTable[K, V]) get(key K) (V, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	s, ok := e.items[key]
	return s.v, ok
}

// length returns the number of entries.
func (e *entryTable[K, V]) length() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.items)
}

// each calls fn for every entry, in no particular order, until fn returns
// false, with the entries locked for reading.
func (e *entryTable[K, V]) each(fn func(key K, value V) bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for k, s := range e.items {
		if !fn(k, s.v) {
			return
		}
	}
}

// snapshot copies the entries, with the version they are at: version is
// the model's own, called with the lock held so that both agree.
func (e *entryTable[K, V]) snapshot(version func() uint64) (map[K]V, uint64) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[K]V, len(e.items))
	for k, s := range e.items {
		out[k] = s.v
	}
	return out, version()
}

// readAt runs fn with the entries locked for reading, giving it a lookup
// and the version they are at (version is called with the lock held): it
// is how a model implements view for its emitter.
func (e *entryTable[K, V]) readAt(version func() uint64, fn func(get func(K) (slot[V], bool), version uint64)) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	fn(e.lookupLocked, version())
}

// lookupLocked returns the slot of key; e.mu is held.
func (e *entryTable[K, V]) lookupLocked(key K) (slot[V], bool) {
	s, ok := e.items[key]
	return s, ok
}
