package cache

import (
	"errors"
	"fmt"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// Map is an observable map: a Cacheable model. Returned from a remote
// method (or passed as an argument), it reaches the caller as a *Mirror that
// receives a snapshot and then every change. Keys and values travel as
// plain data or Copyables; they cannot hold references.
//
// Every change raises Version by one. Changed fires for each change, in
// order, on a goroutine of the model's own: a slow watcher holds up neither
// Set nor the mirrors; watchers that fall behind by more than the queue
// size get merged events (Change.Merged). A Map is safe for concurrent use.
type Map[K comparable, V any] struct {
	// Changed fires after each change, in version order.
	Changed signals.Signal[Change[K, V]]

	entries entryTable[K, V]
	f       *feed.Feed
	em      *emitter[K, V]
	// neverStale is the StaleChanges signal: a model is never stale.
	neverStale signals.Signal[bool]
}

var (
	_ remoteable.Cacheable = (*Map[string, int])(nil)
	_ View[string, int]    = (*Map[string, int])(nil)
)

// entryError is the error of Set for a key or value (what) that its
// mirrors could not receive.
func entryError(what string, err error) error {
	if errors.Is(err, broker.ErrTooDeep) {
		return fmt.Errorf("%w (%s)", err, what)
	}
	return fmt.Errorf("%w: %s cannot be sent to mirrors (%v): a model holds only what a call can carry, not channels or functions",
		broker.ErrBadArguments, what, err)
}

// NewMap returns an empty map with a new epoch.
func NewMap[K comparable, V any](opts ...Option) *Map[K, V] {
	return newMap[K, V](buildOptions(opts), nil)
}

// newMap makes a map whose feed belongs to owner (the map itself when
// nil): a reference to the feed that comes home decodes to owner.
func newMap[K comparable, V any](o options, owner any) *Map[K, V] {
	m := &Map[K, V]{entries: entryTable[K, V]{items: map[K]slot[V]{}}}
	if owner == nil {
		owner = m
	}
	m.f = feed.New(o.logSize, owner)
	m.em = newEmitter[K, V](&m.Changed, nil, m, o.queueSize)
	m.em.reuse = true
	return m
}

// Set sets key to value. It fails only when the key or the value cannot
// be encoded (a channel or a function inside, say: broker.ErrBadArguments),
// when the key is not equal to itself (a NaN, which no Get nor Delete
// could find) or cannot be compared (a map held in an interface), or
// when it encodes as another key the map holds (int 1 and uint 1 in a map
// keyed by any, which its mirrors could not tell apart):
// broker.ErrBadArguments
// or could not reach the map's mirrors: one that nests more than 25 levels
// of arrays, maps and tags fails with an error matching broker.ErrTooDeep.
// The map is then unchanged.
func (m *Map[K, V]) Set(key K, value V) error {
	var buf keyBuf
	kb, err := appendKey(buf[:0], key)
	if err == nil {
		err = feed.CheckEntry(kb)
	}
	if err != nil {
		return entryError(fmt.Sprintf("the key %#v", key), err)
	}
	if unusableKey(key) {
		return fmt.Errorf("%w: the key %#v is not equal to itself (a NaN) or cannot be compared: it could never be found nor deleted",
			broker.ErrBadArguments, key)
	}
	vb, err := marshalEntry(value)
	if err == nil {
		err = feed.CheckEntry(vb)
	}
	if err != nil {
		what := fmt.Sprintf("the value for key %#v", key)
		if _, unit := any(key).(struct{}); unit {
			what = "the value" // a Value's
		}
		return entryError(what, err)
	}
	m.entries.mu.Lock()
	defer m.entries.mu.Unlock()
	old, had := m.entries.items[key]
	var ev feed.Event
	if had {
		// The key as the feed holds it: a key equal to it may encode
		// otherwise (-0.0 and 0.0), and the feed, which knows keys by
		// their bytes, must not take it for another one.
		ev = m.f.Set(old.key, vb)
	} else {
		var fresh bool
		if ev, fresh = m.f.Insert(kb, vb); !fresh {
			// Another key encodes alike (int 1 and uint 1 under any):
			// the feed and every mirror know keys by their bytes, so
			// they would hold one entry where the map holds two.
			return fmt.Errorf("%w: the key %#v encodes as another key the map holds: its mirrors could not tell them apart",
				broker.ErrBadArguments, key)
		}
	}
	// ev.Key is the feed's own copy: kb may be the buffer on this stack.
	m.entries.items[key] = slot[V]{v: value, raw: vb, key: ev.Key}
	m.em.push(item[K, V]{ch: Change[K, V]{Key: key, Value: value, Version: ev.Version}, prev: old, hadPrev: had})
	return nil
}

// Delete removes key, reporting whether it was there. A delete of an
// absent key is not a change.
func (m *Map[K, V]) Delete(key K) bool {
	if unusableKey(key) {
		return false // such a key cannot have been set
	}
	m.entries.mu.Lock()
	defer m.entries.mu.Unlock()
	old, had := m.entries.items[key]
	if !had {
		return false
	}
	ev, ok := m.f.Delete(old.key) // the key as the feed holds it (see Set)
	if !ok {
		panic("cache: a map's entry its feed does not hold") // Set keeps them in step
	}
	delete(m.entries.items, key)
	m.em.push(item[K, V]{ch: Change[K, V]{Key: key, Value: old.v, Deleted: true, Version: ev.Version}, prev: old, hadPrev: true})
	return true
}

// Get returns the value of key.
func (m *Map[K, V]) Get(key K) (V, bool) { return m.entries.get(key) }

// Len returns the number of entries.
func (m *Map[K, V]) Len() int { return m.entries.length() }

// Version returns the number of changes made so far.
func (m *Map[K, V]) Version() uint64 {
	m.entries.mu.RLock()
	defer m.entries.mu.RUnlock()
	return m.f.Version()
}

// Epoch returns the map's epoch, a UUID made when it was created: versions
// are only comparable within one epoch.
func (m *Map[K, V]) Epoch() string { return m.f.Epoch() }

// Range calls fn for every entry, in no particular order, until fn returns
// false. fn sees a consistent state and must not change the map.
func (m *Map[K, V]) Range(fn func(key K, value V) bool) { m.entries.each(fn) }

// Snapshot returns a copy of the entries and the version they are at.
func (m *Map[K, V]) Snapshot() (map[K]V, uint64) { return m.entries.snapshot(m.f.Version) }

// Stale is always false: a local model is its own source.
func (m *Map[K, V]) Stale() bool { return false }

// Changes returns &m.Changed.
func (m *Map[K, V]) Changes() *signals.Signal[Change[K, V]] { return &m.Changed }

// StaleChanges returns a signal that never fires: the model is its own
// source. It makes Map a View.
func (m *Map[K, V]) StaleChanges() *signals.Signal[bool] { return &m.neverStale }

// Err is always nil: the model is its own source. It makes Map a View.
func (m *Map[K, V]) Err() error { return nil }

// MergedChanges returns how many changes the map's watchers have not seen
// as events of their own because they fell behind: more than the queue
// size (WithQueueSize) of events waited for them when the change was made.
// Those changes reached them merged (Change.Merged). It stays zero while
// the watchers keep up.
func (m *Map[K, V]) MergedChanges() uint64 { return m.em.mergedChanges() }

// Subscribers returns the number of mirrors subscribed to the map now.
func (m *Map[K, V]) Subscribers() int { return m.f.Subscribers() }

// CacheFeed implements remoteable.Cacheable.
func (m *Map[K, V]) CacheFeed() any { return m.f.Publisher() }

// read implements view for the map's emitter.
func (m *Map[K, V]) read(fn func(get func(K) (slot[V], bool), version uint64)) {
	m.entries.readAt(m.f.Version, fn)
}

// unmarshal decodes a key or value of a model, nothing when raw is nil,
// through decodeFast when it can.
func unmarshal(raw []byte, v any) error {
	if raw == nil || decodeFast(raw, v) {
		return nil
	}
	return broker.Unmarshal(raw, v)
}

// unusableKey reports whether k is not equal to itself (a NaN, or a
// struct or interface holding one), which a Go map can never find nor
// delete, or cannot be compared at all (a map or slice held in an
// interface), which a Go map cannot hold.
func unusableKey[K comparable](k K) (bad bool) {
	switch any(k).(type) {
	case string, int, int64: // the common keys, without the deferred recover
		return false
	}
	defer func() {
		if recover() != nil { // comparing uncomparable types
			bad = true
		}
	}()
	return k != k
}
