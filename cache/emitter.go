package cache

import (
	"sync"
	"unsafe"

	"github.com/tether-go/tether/signals"
)

// slot is one entry of a typed model: the value and its CBOR form.
type slot[V any] struct {
	v   V
	raw []byte
	// key is the key's bytes as the feed holds them: for a mirror, as it
	// received them, which its feed takes back when it needs a state of
	// its own (mirrorSink.Entries); for a Map, as first set, which a
	// change or deletion of an equal key that encodes otherwise (-0.0
	// for 0.0) gives its feed.
	key []byte
}

// view lets the emitter read the model's current state consistently.
type view[K comparable, V any] interface {
	// read runs fn with the model locked for reading.
	read(fn func(get func(K) (slot[V], bool), version uint64))
}

// item is one queued event for the watchers.
type item[K comparable, V any] struct {
	ch      Change[K, V]
	prev    slot[V] // the entry before the change
	hadPrev bool
	stale   *bool // a stale/live transition instead of a change
}

// before is what the watchers last saw of a key, kept while merging.
type before[V any] struct {
	prev slot[V]
	had  bool
}

// emitter delivers a model's events to its watchers on a goroutine of its
// own, in order, so that a slow watcher never holds up the writer or the
// network. Events come in steps: one change of a local model, or one batch
// a mirror applied. A step is queued whole when fewer than max events wait
// for the watchers as it comes; otherwise the watchers have fallen behind
// and the emitter merges: it only remembers which keys changed (and what
// the watchers last saw of them), and once the watchers catch up it emits
// one event per key that differs, marked Merged. Checking the bound per
// step rather than per event is what lets a watcher that keeps up see
// every change of a batch larger than max. Its goroutine exists only while
// there are events to deliver.
type emitter[K comparable, V any] struct {
	changed *signals.Signal[Change[K, V]]
	stale   *signals.Signal[bool]
	model   view[K, V]
	max     int
	reuse   bool // a local model's: delivered queues are reused (recycle)

	mu    sync.Mutex
	queue []item[K, V]
	// spare is the array of a queue delivered, emptied, which the next
	// queue starts in (recycle), so that a writer whose watchers keep up
	// does not grow a new queue from nothing after every delivery.
	spare     []item[K, V]
	dirty     map[K]before[V] // non-nil while merging
	lateStale []bool          // stale/live transitions while merging, at most two
	running   bool
	merged    uint64 // changes the watchers did not get as events of their own
}

// newEmitter returns the emitter of a model whose watchers are connected
// to changed (and stale, for a mirror), queueing at most max events.
func newEmitter[K comparable, V any](changed *signals.Signal[Change[K, V]], stale *signals.Signal[bool], model view[K, V], max int) *emitter[K, V] {
	return &emitter[K, V]{changed: changed, stale: stale, model: model, max: max}
}

// push queues one event as a step of its own (a local model's change, a
// mirror's stale/live transition). It is called with the model locked for
// writing, so events are queued in the order the state changed.
func (e *emitter[K, V]) push(it item[K, V]) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.admitLocked() {
		return
	}
	switch {
	case e.dirty != nil:
		e.coalesce(it)
	case e.queue == nil && e.spare != nil:
		e.queue, e.spare = append(e.spare, it), nil
	default:
		e.queue = append(e.queue, it)
	}
}

// maxSpareBytes bounds the queue array an emitter keeps for reuse: 5,461
// events of a string key and an int value, more than a queue of
// DefaultQueueSize events grows to.
const maxSpareBytes = 512 << 10

// recycle keeps the array of a queue delivered for the next queue, when
// the emitter is a local model's (reuse), none is kept and it is within
// maxSpareBytes. Its events are cleared first, so that the values they
// held can be collected. A mirror's queues are the arrays its batches'
// events were built in (pushStep): a spare would only be memory held by
// every watched mirror.
func (e *emitter[K, V]) recycle(q []item[K, V]) {
	if !e.reuse || uintptr(cap(q))*unsafe.Sizeof(q[0]) > maxSpareBytes {
		return
	}
	clear(q)
	e.mu.Lock()
	if e.spare == nil {
		e.spare = q[:0]
	}
	e.mu.Unlock()
}

// pushStep queues the events of one step (a batch a mirror applied), in
// order, and keeps its as its queue when none waits. Like push, it is
// called with the model locked.
func (e *emitter[K, V]) pushStep(its []item[K, V]) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(its) == 0 || !e.admitLocked() {
		return
	}
	switch {
	case e.dirty != nil:
		for _, it := range its {
			e.coalesce(it)
		}
	case len(e.queue) == 0:
		e.queue = its
	default:
		e.queue = append(e.queue, its...)
	}
}

// watched reports whether events pushed now would be delivered: someone
// watches, or events are still on their way (a watcher just disconnected
// may be the last). A mirror skips building the events of a batch nobody
// will see.
func (e *emitter[K, V]) watched() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.watchedLocked()
}

// watchedLocked is watched with e.mu held.
func (e *emitter[K, V]) watchedLocked() bool {
	return e.running || len(e.queue) > 0 || e.dirty != nil || e.changed.Len() > 0 || (e.stale != nil && e.stale.Len() > 0)
}

// admitLocked decides, once per step, where its events go: nowhere when
// nobody watches (false), else into the queue or, when max events already
// wait, into the merged state, which the waiting events join. It starts
// the delivering goroutine if none runs. e.mu is held.
func (e *emitter[K, V]) admitLocked() bool {
	if !e.watchedLocked() {
		return false // nobody is watching
	}
	if e.dirty == nil && len(e.queue) >= e.max {
		e.dirty = map[K]before[V]{}
		for _, q := range e.queue {
			e.coalesce(q)
		}
		e.queue = nil
	}
	if !e.running {
		e.running = true
		go e.run()
	}
	return true
}

// coalesce folds one event into the merged state, counting the change it
// stands for as merged. e.mu is held.
func (e *emitter[K, V]) coalesce(it item[K, V]) {
	if it.stale != nil {
		// Keep the last two transitions: an outage that began and ended
		// while the watchers were behind still shows as stale, then live.
		e.lateStale = append(e.lateStale, *it.stale)
		if n := len(e.lateStale); n > 2 {
			e.lateStale = e.lateStale[n-2:]
		}
		return
	}
	e.merged++
	if _, ok := e.dirty[it.ch.Key]; !ok {
		e.dirty[it.ch.Key] = before[V]{prev: it.prev, had: it.hadPrev}
	}
}

// mergedChanges returns how many changes the watchers did not get as
// events of their own so far.
func (e *emitter[K, V]) mergedChanges() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.merged
}

// run delivers events until there are none left.
func (e *emitter[K, V]) run() {
	for {
		batch, ok := e.take()
		if !ok {
			return
		}
		for _, it := range batch {
			if it.stale != nil {
				if e.stale != nil {
					e.stale.Emit(*it.stale)
				}
				continue
			}
			e.changed.Emit(it.ch)
		}
		e.recycle(batch)
	}
}

// take returns the next events to deliver: the queue, or the differences
// a merged stretch left. It reports false, and marks the emitter idle,
// when there is nothing.
func (e *emitter[K, V]) take() ([]item[K, V], bool) {
	e.mu.Lock()
	if len(e.queue) > 0 {
		q := e.queue
		e.queue = nil
		e.mu.Unlock()
		return q, true
	}
	if e.dirty == nil {
		e.running = false
		e.mu.Unlock()
		return nil, false
	}
	e.mu.Unlock()
	// Read the differences with the model locked, so that every change
	// after them is queued behind them.
	var out []item[K, V]
	staleItem := func(s bool) item[K, V] { return item[K, V]{stale: &s} }
	e.model.read(func(get func(K) (slot[V], bool), version uint64) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if n := len(e.lateStale); n > 1 {
			out = append(out, staleItem(e.lateStale[0]))
		}
		for k, b := range e.dirty {
			cur, ok := get(k)
			switch {
			case ok && (!b.had || string(b.prev.raw) != string(cur.raw)):
				out = append(out, item[K, V]{ch: Change[K, V]{Key: k, Value: cur.v, Version: version, Merged: true}})
			case !ok && b.had:
				out = append(out, item[K, V]{ch: Change[K, V]{Key: k, Value: b.prev.v, Deleted: true, Version: version, Merged: true}})
			}
		}
		if n := len(e.lateStale); n > 0 {
			out = append(out, staleItem(e.lateStale[n-1]))
		}
		e.dirty, e.lateStale = nil, nil
	})
	return out, true
}
