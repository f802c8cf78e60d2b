package cache

import (
	"context"

	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// Value is an observable single value: a Cacheable model whose mirror is a
// *ValueMirror. It is a Map with one entry under the key struct{}{}, so its
// changes are Change[struct{}, T] and never Deleted.
type Value[T any] struct {
	// Changed fires after each Set, in version order; points into the
	// underlying map.
	Changed *signals.Signal[Change[struct{}, T]]
	m       *Map[struct{}, T]
}

var (
	_ remoteable.Cacheable   = (*Value[int])(nil)
	_ remoteable.CacheMirror = (*ValueMirror[int])(nil)
	_ ValueView[int]         = (*Value[int])(nil)
	_ ValueView[int]         = (*ValueMirror[int])(nil)
)

// ValueView is what a local Value and a mirror of it have in common, as
// View is for a Map and its Mirror: an interface method declared to return
// a ValueView[T] returns the *Value on the server, and its typed stub
// receives a *ValueMirror, so code that reads and watches the value is the
// same locally and remotely. Like View it has no Close, for the same
// reason: a *ValueMirror is an io.Closer, a *Value is not.
type ValueView[T any] interface {
	// Get returns the value.
	Get() T
	// Version returns the version of the value.
	Version() uint64
	// Stale reports whether the value may be behind the model's (always
	// false for the model itself).
	Stale() bool
	// Changes returns the Changed signal.
	Changes() *signals.Signal[Change[struct{}, T]]
	// StaleChanges returns the signal of stale/live transitions (a
	// mirror's StaleChanged; the model's own never fires).
	StaleChanges() *signals.Signal[bool]
	// Err returns why a mirror cannot follow its model, or nil; always nil
	// for the model itself.
	Err() error
}

// NewValue returns a value model holding initial (version 1).
func NewValue[T any](initial T, opts ...Option) *Value[T] {
	v := &Value[T]{}
	v.m = newMap[struct{}, T](buildOptions(opts), v) // a mirror of v that comes home is v
	v.Changed = &v.m.Changed
	_ = v.m.Set(struct{}{}, initial) // an initial value that cannot be encoded shows at the first Set
	return v
}

// Set replaces the value as a new version. It fails, leaving the value as
// it was, for a value Map.Set refuses (broker.ErrTooDeep for one nested
// more than 25 levels).
func (v *Value[T]) Set(x T) error { return v.m.Set(struct{}{}, x) }

// Get returns the value.
func (v *Value[T]) Get() T { x, _ := v.m.Get(struct{}{}); return x }

// Version returns the number of changes made so far (the initial value
// counts as one).
func (v *Value[T]) Version() uint64 { return v.m.Version() }

// Epoch returns the model's epoch.
func (v *Value[T]) Epoch() string { return v.m.Epoch() }

// MergedChanges returns how many changes the watchers have not seen as
// events of their own because they fell behind; see Map.MergedChanges.
func (v *Value[T]) MergedChanges() uint64 { return v.m.MergedChanges() }

// CacheFeed implements remoteable.Cacheable.
func (v *Value[T]) CacheFeed() any { return v.m.CacheFeed() }

// Stale is always false: the model is its own source. It makes Value a
// ValueView.
func (v *Value[T]) Stale() bool { return false }

// Changes returns the Changed signal, as ValueView asks.
func (v *Value[T]) Changes() *signals.Signal[Change[struct{}, T]] { return v.Changed }

// StaleChanges returns a signal that never fires: the model is its own
// source. It makes Value a ValueView.
func (v *Value[T]) StaleChanges() *signals.Signal[bool] { return v.m.StaleChanges() }

// Err is always nil: the model is its own source. It makes Value a
// ValueView.
func (v *Value[T]) Err() error { return nil }

// ValueMirror is a read-only copy of a remote Value; see Mirror for how it
// stays in sync, how it goes home as the Value itself, and why a
// ValueMirror nobody holds and nobody watches stops following, while one
// with functions connected to its signals goes on.
type ValueMirror[T any] struct {
	// Changed fires after each change, in version order.
	Changed *signals.Signal[Change[struct{}, T]]
	// StaleChanged fires on stale/live transitions.
	StaleChanged *signals.Signal[bool]
	// Lost fires once, with an error matching ErrSourceLost, when the
	// mirror can no longer follow its model.
	Lost *signals.Signal[error]
	m    *Mirror[struct{}, T]
}

// NewValueMirror returns a value mirror that follows nothing yet, made with
// opts; see NewMirror for how to receive a model into it:
//
//	vm := cache.NewValueMirror[Stats](cache.WithQueueSize(1 << 16))
//	err := stats.Call(ctx, "Current", &vm)
func NewValueMirror[T any](opts ...Option) *ValueMirror[T] {
	v := &ValueMirror[T]{}
	v.init(NewMirror[struct{}, T](opts...))
	return v
}

// init makes v the face of m: its signals are m's.
func (v *ValueMirror[T]) init(m *Mirror[struct{}, T]) {
	v.m = m
	v.Changed, v.StaleChanged, v.Lost = &m.Changed, &m.StaleChanged, &m.Lost
}

// AttachCache implements remoteable.CacheMirror.
func (v *ValueMirror[T]) AttachCache(ctx context.Context, src remoteable.Caller) error {
	if v.m == nil { // made by the broker, not by NewValueMirror
		v.init(&Mirror[struct{}, T]{})
	}
	// The feed belongs to v, so that v is what comes home; the cleanup
	// that closes the follower is on v.m, which only v holds.
	return v.m.attach(ctx, src, weakOwner(v))
}

// Get returns the value.
func (v *ValueMirror[T]) Get() T { x, _ := v.m.Get(struct{}{}); return x }

// Version returns the version of the value the mirror holds.
func (v *ValueMirror[T]) Version() uint64 { return v.m.Version() }

// Stale reports whether the value may be behind the model's.
func (v *ValueMirror[T]) Stale() bool { return v.m.Stale() }

// Changes returns the Changed signal, as ValueView asks.
func (v *ValueMirror[T]) Changes() *signals.Signal[Change[struct{}, T]] { return v.Changed }

// Err returns why the mirror last failed to resume, or nil.
func (v *ValueMirror[T]) Err() error { return v.m.Err() }

// StaleChanges returns the StaleChanged signal, as ValueView asks.
func (v *ValueMirror[T]) StaleChanges() *signals.Signal[bool] { return v.StaleChanged }

// Close ends the subscription.
func (v *ValueMirror[T]) Close() error { return v.m.Close() }

// MergedChanges returns how many changes the watchers have not seen as
// events of their own because they fell behind; see Mirror.MergedChanges.
func (v *ValueMirror[T]) MergedChanges() uint64 { return v.m.MergedChanges() }

// CacheFeed implements remoteable.Cacheable.
func (v *ValueMirror[T]) CacheFeed() any { return v.m.CacheFeed() }
