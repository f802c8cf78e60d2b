package gateway

import (
	"errors"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tether-go/tether/remote"
)

var errUnknownHandle = errors.New("unknown or expired handle")

// handles are the references this gateway handed to JSON clients, under
// unguessable names: a client can call only what a result gave it. A
// handle not used for the idle time is released, and beyond the maximum
// count the least recently used one goes.
type handles struct {
	mu      sync.Mutex
	byID    map[string]*handle
	idle    time.Duration
	max     int
	now     func() time.Time
	swept   time.Time
	closed  bool
	dropped func(*remote.Ref) // told of every reference let go
}

type handle struct {
	ref  *remote.Ref
	typ  string
	used time.Time
}

// newHandles returns an empty table with these bounds.
func newHandles(idle time.Duration, max int) *handles {
	return &handles{byID: map[string]*handle{}, idle: idle, max: max, now: time.Now, dropped: func(*remote.Ref) {}}
}

// put keeps r and returns its handle. Once the table is closed, r is
// released at once and the handle leads nowhere.
func (hs *handles) put(r *remote.Ref, typ string) string {
	id := "ref-" + uuid.NewString()
	var drop []*remote.Ref
	hs.mu.Lock()
	if hs.closed {
		hs.mu.Unlock()
		hs.release([]*remote.Ref{r})
		return id
	}
	now := hs.now()
	drop = hs.sweepLocked(now, drop)
	for len(hs.byID) >= hs.max {
		var oldID string
		var old *handle
		for hid, h := range hs.byID {
			if old == nil || h.used.Before(old.used) {
				oldID, old = hid, h
			}
		}
		delete(hs.byID, oldID)
		drop = append(drop, old.ref)
	}
	hs.byID[id] = &handle{ref: r, typ: typ, used: now}
	hs.mu.Unlock()
	hs.release(drop)
	return id
}

// get returns the reference behind id, or nil.
func (hs *handles) get(id string) *remote.Ref {
	var drop []*remote.Ref
	hs.mu.Lock()
	now := hs.now()
	drop = hs.sweepLocked(now, drop)
	h := hs.byID[id]
	if h != nil {
		h.used = now
	}
	hs.mu.Unlock()
	hs.release(drop)
	if h == nil {
		return nil
	}
	return h.ref
}

// remove releases id; it reports whether id was a handle.
func (hs *handles) remove(id string) bool {
	hs.mu.Lock()
	h := hs.byID[id]
	delete(hs.byID, id)
	hs.mu.Unlock()
	if h != nil {
		hs.release([]*remote.Ref{h.ref})
	}
	return h != nil
}

// sweepLocked drops handles idle for too long, at most once a second.
func (hs *handles) sweepLocked(now time.Time, drop []*remote.Ref) []*remote.Ref {
	if now.Sub(hs.swept) < time.Second {
		return drop
	}
	hs.swept = now
	for id, h := range hs.byID {
		if now.Sub(h.used) > hs.idle {
			delete(hs.byID, id)
			drop = append(drop, h.ref)
		}
	}
	return drop
}

// closeAll releases every handle; later puts release their reference at
// once.
func (hs *handles) closeAll() {
	hs.mu.Lock()
	all := hs.byID
	hs.byID = map[string]*handle{}
	hs.closed = true
	hs.mu.Unlock()
	for _, h := range all {
		hs.release([]*remote.Ref{h.ref})
	}
}

// release lets refs go. A reference in use by a call at that moment fails
// that call (broker.ErrReleased) at worst.
func (hs *handles) release(refs []*remote.Ref) {
	for _, r := range refs {
		r.Release()
		hs.dropped(r)
	}
}
