package signals

import (
	"sync"
	"sync/atomic"
)

// Signal is a typed event source. Observers Connect slots to it and the owner
// calls Emit; every connected slot receives every emitted value.
//
// Emit never takes a lock and never allocates: it reads an immutable slot list
// that Connect and the returned disconnect functions replace copy-on-write.
// A Signal must not be copied after first use.
type Signal[T any] struct {
	mu      sync.Mutex // serialises writers of slots, and calls of watched
	slots   atomic.Pointer[[]*slot[T]]
	watched func(bool) // see OnWatched; guarded by mu
}

type slot[T any] struct {
	fn   func(T)
	dead atomic.Bool
}

// Connect adds fn to the signal and returns a function that disconnects it.
// The disconnect function is idempotent. After it returns, fn is not called by
// any later Emit; an Emit already running in another goroutine may still be
// calling it.
func (s *Signal[T]) Connect(fn func(T)) (disconnect func()) {
	if fn == nil {
		panic("signals: Connect with nil func")
	}
	sl := &slot[T]{fn: fn}
	s.mu.Lock()
	old := s.load()
	next := make([]*slot[T], len(old), len(old)+1)
	copy(next, old)
	next = append(next, sl)
	s.slots.Store(&next)
	if len(old) == 0 && s.watched != nil {
		s.watched(true)
	}
	s.mu.Unlock()
	return func() { s.remove(sl) }
}

// OnWatched makes s call fn(true) when a function is connected to it while
// none is, and fn(false) when its last one is disconnected, so that the
// owner of a signal can stay alive while someone watches it (a cache
// mirror does: its changes come from the network, not from code that
// holds it). fn is called with s's lock held, in the order of the
// changes, and must not use s. Setting it again replaces fn; nil removes
// it. It does not call fn for the functions connected already.
func (s *Signal[T]) OnWatched(fn func(watched bool)) {
	s.mu.Lock()
	s.watched = fn
	s.mu.Unlock()
}

func (s *Signal[T]) remove(sl *slot[T]) {
	if sl.dead.Swap(true) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	next := make([]*slot[T], 0, len(old))
	for _, o := range old {
		if o != sl {
			next = append(next, o)
		}
	}
	s.slots.Store(&next)
	if len(next) == 0 && len(old) > 0 && s.watched != nil {
		s.watched(false)
	}
}

func (s *Signal[T]) load() []*slot[T] {
	if p := s.slots.Load(); p != nil {
		return *p
	}
	return nil
}

// Emit calls every connected slot with v, in connection order, in the calling
// goroutine. Slots connected or disconnected by a slot during Emit take effect
// from the next Emit.
func (s *Signal[T]) Emit(v T) {
	for _, sl := range s.load() {
		if !sl.dead.Load() {
			sl.fn(v)
		}
	}
}

// Len reports how many slots are connected.
func (s *Signal[T]) Len() int { return len(s.load()) }
