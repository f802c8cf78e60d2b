package cache

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// Mirror is a read-only copy of a remote Map, kept in sync: it is what a
// Map becomes on the far side of a call. Declare a variable of this type and
// pass its address as the reply (or as the handler's parameter type):
//
//	var mir *cache.Mirror[string, User]
//	err := users.Call(ctx, "Model", &mir)
//
// A nil mirror is made with the default options; one made by NewMirror is
// received into in place, with its options. A mirror follows one model:
// receiving another into one that already follows a model fails with an
// error matching ErrAttached.
//
// When the call returns the mirror already holds the model's state. It then
// applies every change in version order, fires Changed for each, and after
// an outage resumes from its (epoch, version): it gets the changes it
// missed, or a snapshot whose differences from its state it applies and
// fires as ordinary changes. Stale reports (and StaleChanged signals) when
// the model is out of reach. A mirror obtained through a *remote.Ref
// resumes by itself when the link comes back, through relays too, without
// any declaration; when the model's owner itself restarted, it replays the
// method only if that is declared Idempotent, and otherwise reports
// ErrSourceLost (Err, the Lost signal, a warning in the log). One obtained
// through a bare *broker.Ref reports ErrSourceLost once its connection
// ends.
//
// A mirror is Cacheable too: return it from a method and the caller gets a
// mirror of the mirror (a relay). Passed or returned to the process that
// owns its model, it arrives there as the model itself (a *Map, a *Value,
// or that process's own mirror), not as a mirror: a parameter of the
// model's type or of type any receives it, a parameter of a mirror type
// fails with broker.ErrBadArguments.
//
// Close it when done. A mirror its user no longer references, and no
// function is connected to, is released by the garbage collector, like a
// reference: its subscription ends and the owner drops it. A function
// connected to Changed, StaleChanged or Lost keeps the mirror following
// its model, referenced or not (as a local model's watchers go on hearing
// its writer), until it is disconnected, the mirror is closed, or the
// mirror stops following (its client closed, its source lost). A mirror
// that was passed on to another
// peer lives while that peer holds it, and for a minute after that peer's
// link died, so that the peer's mirror can resume it by its token. A
// Mirror is safe for concurrent use.
type Mirror[K comparable, V any] struct {
	// Changed fires after each change, in version order.
	Changed signals.Signal[Change[K, V]]
	// StaleChanged fires true when the model goes out of reach and false
	// when the mirror is in sync again, in order with Changed.
	StaleChanged signals.Signal[bool]
	// Lost fires once, with an error matching ErrSourceLost, when the
	// mirror can no longer follow its model.
	Lost signals.Signal[error]

	entries entryTable[K, V]
	version uint64 // guarded by entries.mu, like stale and em
	stale   bool
	em      *emitter[K, V] // set when an attachment begins
	opts    options        // NewMirror's; zero for a mirror the broker made

	// attaching is set by the first attachment, and cleared again if it
	// fails, so that one mirror never follows two models.
	attaching atomic.Bool
	fl        atomic.Pointer[feed.Follower] // set once attached

	// Watching (see watched): whether the hooks on the signals are in
	// place, how many signals have functions connected, what the feed
	// belongs to (set by attach), and whether Close ended the mirror.
	hooked   atomic.Bool
	pinMu    sync.Mutex // orders pinning against Close
	watchers int        // guarded by pinMu
	owner    func() any // guarded by pinMu
	closed   bool       // guarded by pinMu: closed, or its follower stopped
}

// pinned holds the mirrors that functions are connected to, each with
// what its feed belongs to (the mirror, or the ValueMirror around it), so
// that the collector leaves them and their subscriptions alone until the
// last function is disconnected or the mirror is closed.
var pinned sync.Map

// hookSignals makes m count the signals that functions are connected to
// (see watched). It runs once, from NewMirror or the first attachment;
// functions connected before it count too.
func (m *Mirror[K, V]) hookSignals() {
	if !m.hooked.CompareAndSwap(false, true) {
		return
	}
	m.Changed.OnWatched(m.watched)
	m.StaleChanged.OnWatched(m.watched)
	m.Lost.OnWatched(m.watched)
	for _, n := range []int{m.Changed.Len(), m.StaleChanged.Len(), m.Lost.Len()} {
		if n > 0 {
			m.watched(true)
		}
	}
}

// watched keeps m alive while functions are connected to its signals: a
// mirror watched by code that kept no reference to it goes on following
// its model, as the watchers of a local model go on hearing its writer.
// It is called with true when a signal gains its first function and with
// false when it loses its last.
func (m *Mirror[K, V]) watched(on bool) {
	m.pinMu.Lock()
	defer m.pinMu.Unlock()
	if on {
		m.watchers++
	} else {
		m.watchers--
	}
	m.repin()
}

// unpin takes m out of the pinned mirrors for good: it was closed, or its
// follower stopped.
func (m *Mirror[K, V]) unpin() {
	m.pinMu.Lock()
	defer m.pinMu.Unlock()
	m.closed = true
	m.repin()
}

// repin puts m among the pinned mirrors, with its feed's owner, while it
// is attached, not closed and watched, and takes it out otherwise. It runs
// with m.pinMu held.
func (m *Mirror[K, V]) repin() {
	if m.owner == nil || m.closed || m.watchers <= 0 {
		pinned.Delete(m)
		return
	}
	var owner any = m
	if x := m.owner(); x != nil {
		owner = x
	}
	pinned.Store(m, owner)
}

// ErrAttached reports a mirror given to receive a model while it already
// follows one (or is being attached to one): a mirror follows one model
// for its lifetime, with the options it was made with. Receive each model
// into a nil *Mirror or a new one from NewMirror.
var ErrAttached = errors.New("cache: the mirror already follows a model")

// NewMirror returns a mirror that follows nothing yet, made with opts:
// WithQueueSize bounds the events waiting for its watchers, WithLogSize
// its own log, from which the mirrors downstream of it (through a relay
// or a method returning it) resume. Pass its address as the reply of the
// call that returns the model, and the broker attaches this mirror rather
// than making one with the defaults:
//
//	mir := cache.NewMirror[string, User](cache.WithQueueSize(1 << 16))
//	err := users.Call(ctx, "Model", &mir)
//
// Until then it is empty at version 0, and Close does nothing. Functions
// connected to Changed before the call see the model's entries as they
// arrive, as Merged changes at the snapshot's version. Receiving a second
// model into it fails with an error matching ErrAttached (and
// broker.ErrBadReply); a failed attachment leaves it as it was made.
func NewMirror[K comparable, V any](opts ...Option) *Mirror[K, V] {
	m := &Mirror[K, V]{opts: buildOptions(opts)}
	m.hookSignals()
	return m
}

var (
	_ feed.StateSource       = (*mirrorSink[string, int])(nil)
	_ remoteable.CacheMirror = (*Mirror[string, int])(nil)
	_ remoteable.Cacheable   = (*Mirror[string, int])(nil)
	_ View[string, int]      = (*Mirror[string, int])(nil)
)

// AttachCache implements remoteable.CacheMirror: the broker calls it on a
// new mirror, or the one NewMirror made that the reply pointed to, with a
// reference to the model's feed.
func (m *Mirror[K, V]) AttachCache(ctx context.Context, src remoteable.Caller) error {
	return m.attach(ctx, src, weakOwner(m))
}

// attach makes m follow src. owner returns what the mirror's feed belongs
// to (m, or the ValueMirror around it) while it lives.
//
// Reachability: the follower's goroutine, the observer the source's owner
// holds, and the feed reach m only through weak pointers, so m is
// collected once its user lets go of it; a cleanup then closes the
// follower, which releases the subscription. While some connection holds
// the mirror's feed (it was passed on), the feed's publisher holds the
// owner, and m lives.
func (m *Mirror[K, V]) attach(ctx context.Context, src remoteable.Caller, owner func() any) error {
	if !m.attaching.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %w: receive each model into a new mirror (a nil *cache.Mirror, or a new one from cache.NewMirror)", broker.ErrBadReply, ErrAttached)
	}
	o := m.opts
	if o.queueSize == 0 { // made by the broker, not by NewMirror
		o = buildOptions(nil)
	}
	m.entries.mu.Lock()
	m.entries.items, m.version, m.stale = map[K]slot[V]{}, 0, false
	m.em = newEmitter[K, V](&m.Changed, &m.StaleChanged, m, o.queueSize)
	m.entries.mu.Unlock()
	wm := weak.Make(m) // the follower must not keep the mirror reachable
	fo := feed.Options{LogSize: o.logSize, Owner: owner, OnLost: func(err error) {
		if m := wm.Value(); m != nil {
			m.Lost.Emit(err)
		}
	}, OnEnd: func() {
		if m := wm.Value(); m != nil {
			m.unpin() // nothing more will come for its watchers
		}
	}}
	if _, ok := src.(*remote.Ref); ok {
		fo.WaitLink = remote.WaitForLink
	}
	sink := &mirrorSink[K, V]{m: wm}
	fl := feed.NewFollower(src, sink, fo)
	sink.f = fl.Feed()
	if err := fl.Attach(ctx); err != nil {
		// The follower closed itself and will not call the sink again, so
		// the mirror can be attached afresh (a retried call): the next
		// attachment resets what this one may have applied.
		m.attaching.Store(false)
		return err
	}
	m.fl.Store(fl)
	m.hookSignals()
	m.pinMu.Lock()
	m.owner = owner
	m.repin() // watched before the attachment: pinned from now on
	m.pinMu.Unlock()
	// Close is quick (it cancels the follower's goroutine and waits for
	// it to return), so it runs on the cleanup goroutine itself.
	runtime.AddCleanup(m, (*feed.Follower).Close, fl)
	return nil
}

// weakOwner returns a function that returns p while it lives, and nil
// after it was collected: a feed's owner that the feed does not keep
// alive.
func weakOwner[T any](p *T) func() any {
	w := weak.Make(p)
	return func() any {
		if x := w.Value(); x != nil {
			return x
		}
		return nil
	}
}

// Get returns the value of key.
func (m *Mirror[K, V]) Get(key K) (V, bool) { return m.entries.get(key) }

// Len returns the number of entries.
func (m *Mirror[K, V]) Len() int { return m.entries.length() }

// Version returns the version of the model the mirror holds.
func (m *Mirror[K, V]) Version() uint64 {
	m.entries.mu.RLock()
	defer m.entries.mu.RUnlock()
	return m.version
}

// versionLocked is the version the entries are at, for entries' methods,
// which call it with m.mu held.
func (m *Mirror[K, V]) versionLocked() uint64 { return m.version }

// Epoch returns the epoch of the model the mirror holds.
func (m *Mirror[K, V]) Epoch() string {
	fl := m.fl.Load()
	if fl == nil {
		return ""
	}
	return fl.Feed().Epoch()
}

// Range calls fn for every entry, in no particular order, until fn returns
// false.
func (m *Mirror[K, V]) Range(fn func(key K, value V) bool) { m.entries.each(fn) }

// Snapshot returns a copy of the entries and the version they are at.
func (m *Mirror[K, V]) Snapshot() (map[K]V, uint64) { return m.entries.snapshot(m.versionLocked) }

// Stale reports whether the mirror may be behind the model: its link (or a
// link further upstream) is down, or it was closed.
func (m *Mirror[K, V]) Stale() bool {
	m.entries.mu.RLock()
	defer m.entries.mu.RUnlock()
	return m.stale
}

// Changes returns &m.Changed.
func (m *Mirror[K, V]) Changes() *signals.Signal[Change[K, V]] { return &m.Changed }

// StaleChanges returns &m.StaleChanged, as View asks.
func (m *Mirror[K, V]) StaleChanges() *signals.Signal[bool] { return &m.StaleChanged }

// Err returns why the mirror last failed to resume, or nil. Once the
// mirror lost its source for good the error matches ErrSourceLost.
func (m *Mirror[K, V]) Err() error {
	fl := m.fl.Load()
	if fl == nil {
		return nil
	}
	return fl.Err()
}

// Subscribers returns the number of mirrors subscribed to this one.
func (m *Mirror[K, V]) Subscribers() int {
	fl := m.fl.Load()
	if fl == nil {
		return 0
	}
	return fl.Feed().Subscribers()
}

// MergedChanges returns how many changes the mirror's watchers have not
// seen as events of their own because they fell behind (see
// Change.Merged and WithQueueSize). It is zero while they keep up;
// the differences a snapshot brings after an outage are not counted.
func (m *Mirror[K, V]) MergedChanges() uint64 {
	m.entries.mu.RLock()
	em := m.em
	m.entries.mu.RUnlock()
	if em == nil {
		return 0
	}
	return em.mergedChanges()
}

// Close ends the subscription; the owner drops it. The mirror keeps its
// last state and reports Stale. Close is idempotent. A mirror nobody
// references is closed by the garbage collector, later.
func (m *Mirror[K, V]) Close() error {
	if fl := m.fl.Load(); fl != nil {
		m.unpin()
		fl.Close()
	}
	return nil
}

// CacheFeed implements remoteable.Cacheable: a mirror can be republished.
func (m *Mirror[K, V]) CacheFeed() any {
	fl := m.fl.Load()
	if fl == nil {
		return nil
	}
	return fl.Feed().Publisher()
}

// read implements view for the mirror's emitter.
func (m *Mirror[K, V]) read(fn func(get func(K) (slot[V], bool), version uint64)) {
	m.entries.readAt(m.versionLocked, fn)
}

// mirrorSink is the mirror as its feed's typed layer. It holds the mirror
// weakly: the follower must not keep it reachable (see attach). Once the
// mirror is collected the sink does nothing, and the mirror's cleanup
// closes the follower.
type mirrorSink[K comparable, V any] struct {
	m weak.Pointer[Mirror[K, V]]
	f *feed.Feed // the follower's feed, whose version the mirror takes
	// decoded holds the changes Decode decoded since the last Commit:
	// Decode returns a pointer into it, which an interface holds without
	// an allocation of its own. The feed calls the sink from one
	// goroutine at a time, and Commit is the last to read them.
	decoded []decodedChange[K, V]
}

// maxDecodedKept is the capacity of mirrorSink.decoded that Commit keeps
// for the next batches: a batch's worth, not a large snapshot's.
const maxDecodedKept = 4096

// decodedChange is a change's key and value in the mirror's types.
type decodedChange[K comparable, V any] struct {
	k K
	v V
}

// Decode decodes a change's key and value into the mirror's types, so that
// a batch that does not fit them is refused before anything is applied.
func (s *mirrorSink[K, V]) Decode(c feed.Change) (any, error) {
	// An earlier pointer into decoded stays valid when append moves it:
	// it keeps the old array, whose values never change.
	s.decoded = append(s.decoded, decodedChange[K, V]{})
	d := &s.decoded[len(s.decoded)-1]
	if err := decodeChange(c, d); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeChange decodes c's key, and its value unless it is a deletion,
// into d.
func decodeChange[K comparable, V any](c feed.Change, d *decodedChange[K, V]) error {
	if err := unmarshal(c.Key, &d.k); err != nil {
		return fmt.Errorf("cache: key: %w", err)
	}
	if unusableKey(d.k) {
		// A NaN, or a struct holding one: the entries could never find
		// nor delete it, and a leaf mirror's feed, which takes its state
		// from them (Entries), would bring it back after the source
		// deleted it. A map decoded into an interface would panic them.
		return fmt.Errorf("cache: key %v is not equal to itself (a NaN) or cannot be compared: a mirror cannot hold it", d.k)
	}
	if !c.Deleted {
		if err := unmarshal(c.Value, &d.v); err != nil {
			return fmt.Errorf("cache: value for %v: %w", d.k, err)
		}
	}
	return nil
}

// Entries implements feed.StateSource: the bytes of every entry, which
// the mirror's feed takes when it first needs a state of its own. The
// feed is locked, so the entries are at its version.
func (s *mirrorSink[K, V]) Entries(yield func(key, value []byte)) bool {
	m := s.m.Value()
	if m == nil {
		return false
	}
	m.entries.mu.RLock()
	defer m.entries.mu.RUnlock()
	for _, sl := range m.entries.items {
		yield(sl.key, sl.raw)
	}
	return true
}

// Commit applies a batch of changes to the typed entries and queues their
// events as one step. An event is Merged when it does not stand for exactly
// the one change after the previous one: the epoch changed (reset), or its
// version is not one more than the state's before it (a snapshot's
// differences, all at the snapshot's version).
func (s *mirrorSink[K, V]) Commit(events []feed.Event, reset bool) {
	defer s.clearDecoded()
	m := s.m.Value()
	if m == nil {
		return
	}
	m.entries.mu.Lock()
	defer m.entries.mu.Unlock()
	var its []item[K, V]
	// Events nobody will see are not built. A watcher that connects while
	// the batch is applied misses it, as if it had connected just after.
	if m.em.watched() {
		its = make([]item[K, V], 0, len(events))
	}
	at := m.version
	for _, ev := range events {
		d := ev.Decoded.(*decodedChange[K, V])
		if its == nil {
			// Nobody needs the entry it replaces: one map operation
			// rather than a lookup and then an assignment.
			if ev.Deleted {
				delete(m.entries.items, d.k)
			} else {
				m.entries.items[d.k] = slot[V]{v: d.v, raw: ev.Value, key: ev.Key}
			}
			continue
		}
		old, had := m.entries.items[d.k]
		ch := Change[K, V]{Key: d.k, Value: d.v, Version: ev.Version, Merged: reset || ev.Version != at+1}
		if ev.Deleted {
			delete(m.entries.items, d.k)
			ch.Value, ch.Deleted = old.v, true
		} else {
			m.entries.items[d.k] = slot[V]{v: d.v, raw: ev.Value, key: ev.Key}
		}
		if its != nil {
			its = append(its, item[K, V]{ch: ch, prev: old, hadPrev: had})
		}
		at = ev.Version
	}
	m.version = s.f.VersionLocked()
	m.em.pushStep(its)
}

// clearDecoded forgets the decoded changes once committed, keeping the
// array for the next batch unless a large snapshot grew it.
func (s *mirrorSink[K, V]) clearDecoded() {
	if cap(s.decoded) > maxDecodedKept {
		s.decoded = nil
		return
	}
	clear(s.decoded) // the values may hold pointers the mirror let go of
	s.decoded = s.decoded[:0]
}

// Stale records a stale/live transition and queues it for the watchers,
// in order with the changes.
func (s *mirrorSink[K, V]) Stale(stale bool) {
	m := s.m.Value()
	if m == nil {
		return
	}
	m.entries.mu.Lock()
	defer m.entries.mu.Unlock()
	if m.stale != stale {
		m.stale = stale
		st := stale
		m.em.push(item[K, V]{stale: &st})
	}
}
