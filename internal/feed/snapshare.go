package feed

import (
	"sync"
	"sync/atomic"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/cborx"
)

// sharedSnap is a snapshot of a feed's whole state at one version, encoded
// once as the batches of docs/protocol.md §11.6 rule 1 and sent to every
// subscription that needs a snapshot while the feed's log still reaches
// back to it. Its entries are all read at that version, under the feed's
// lock, so it has no steps: its last batch ends at its version.
//
// It is the feed's, never a subscription's: a subscription part way
// through it keeps the snapshot's (epoch, version) and the index of its
// next batch, and finds it again through Feed.snap; only the batch in
// flight outlives the feed's interest in it. The feed lets it go once no
// subscription is part way through it (users).
type sharedSnap struct {
	epoch   string
	version uint64
	stale   bool
	outages uint64
	users   atomic.Int32 // subscriptions part way through it

	once     sync.Once
	entries  []Change // until encoded
	batches  [][]byte // each a whole batch, token ""
	lastMore []byte   // the last batch again, with more set: steps follow it
	counts   []int    // the entries of each batch
}

// sharedCursor is a subscription's place in a shared snapshot. Only the
// pusher uses it.
type sharedCursor struct {
	active  bool
	epoch   string
	version uint64
	next    int // the next batch to send
	// Once the entries are sent, the snapshot's steps (rule 1.2): from
	// at until they reach until, the feed's version when the last
	// entries went.
	stepping  bool
	at, until uint64
}

// usable reports whether sn can serve a subscription at (epoch, version)
// of a feed whose tail is t: same epoch as the tail, still covered by its
// log (so the steps after it can follow), and not behind the
// subscription's own version in its epoch (the mirror would refuse it).
func (sn *sharedSnap) usable(t *tail, epoch string, version uint64) bool {
	return sn != nil && sn.epoch == t.epoch && (sn.version == t.version || t.find(sn.version) >= 0) &&
		(sn.epoch != epoch || sn.version >= version)
}

// encode cuts the entries into batches within the bounds of rule 1 and
// encodes them, once.
func (sn *sharedSnap) encode() {
	sn.once.Do(func() {
		es := sn.entries
		for first := true; first || len(es) > 0; first = false {
			n, size := 0, 0
			for n < len(es) && n < maxBatchChanges && size < maxBatchBytes {
				size += len(es[n].Key) + len(es[n].Value)
				n++
			}
			b := Batch{Epoch: sn.epoch, Version: sn.version, Stale: sn.stale, Snapshot: true,
				More: n < len(es), First: first, Entries: es[:n:n]}
			sn.batches = append(sn.batches, appendBatch(nil, &b))
			sn.counts = append(sn.counts, n)
			es = es[n:]
			if len(es) == 0 {
				b.More = true
				sn.lastMore = appendBatch(nil, &b)
			}
		}
		sn.entries = nil
	})
}

// sharedSnapshot returns a shared snapshot a subscription at (epoch,
// version) can use: the feed's current one, or a new one taken now.
// Reading the entries is O(entries) under f.mu, once per snapshot shared
// by every subscription that needs one meanwhile. The pushers that need
// one at the same moment queue on snapMu, not f.mu, which the writer
// takes: all but the first find the new one usable without f.mu.
func (f *Feed) sharedSnapshot(epoch string, version uint64) *sharedSnap {
	f.snapMu.Lock()
	defer f.snapMu.Unlock()
	if sn := f.snap.Load(); sn.usable(f.current(), epoch, version) {
		return sn
	}
	f.mu.Lock()
	// The tail reaches the snapshot's version, so that a tail read after
	// it finds it usable.
	f.publishPending()
	sn := &sharedSnap{epoch: f.epoch, version: f.version, stale: f.stale, outages: f.outages,
		entries: make([]Change, 0, len(f.index))}
	for i := range f.slots {
		if sl := &f.slots[i]; sl.live {
			sn.entries = append(sn.entries, Change{Key: sl.key, Value: sl.value})
		}
	}
	f.unlock()
	f.snap.Store(sn)
	return sn
}

// wantsShared reports whether the next batch comes from a shared
// snapshot: one is under way, or the cursor needs a snapshot (another
// epoch, or a version the tail's log does not reach) and has the default
// batch size and no snapshot of its own under way.
func (s *Subscription) wantsShared(t *tail) bool {
	if s.shared.active || s.shared.stepping {
		return true
	}
	if s.maxBytes != 0 || s.snapOwn {
		return false
	}
	return s.epoch != t.epoch || (s.version != t.version && t.find(s.version) < 0)
}

// fromShared returns the next batch of the shared snapshot, starting
// (again) at the first batch of the current one when the one under way
// was replaced, or when the log no longer holds the steps that must
// follow it. Its entries, all read at its version S, are followed by the
// steps from S to T, the feed's version when the last entries went, as
// the snapshot's steps; after them the cursor is the snapshot's epoch
// and T, and the live tail takes over.
func (s *Subscription) fromShared(t *tail) outgoing {
	c := &s.shared
	if c.stepping {
		if c.epoch == t.epoch && t.find(c.at) >= 0 {
			return s.snapshotSteps(t)
		}
		c.stepping = false // the log moved past the snapshot: again
	}
	sn := s.f.snap.Load()
	if !c.active || sn == nil || sn.epoch != c.epoch || sn.version != c.version {
		sn = s.joinShared(t, sn)
	}
	i := c.next
	c.next++
	bytes := sn.batches[i]
	last := c.next == len(sn.batches)
	// t may be older than a snapshot just taken: only a tail past the
	// snapshot's version has steps to follow it.
	more := !last || (t.epoch == sn.epoch && t.version > sn.version)
	if last && more {
		bytes = sn.lastMore
		c.stepping, c.at, c.until = true, sn.version, t.version
	}
	if !s.tokenSent {
		bytes = s.withToken(bytes)
	}
	p := pushed{epoch: sn.epoch, version: sn.version, more: more, snapshot: true, first: i == 0, changes: sn.counts[i]}
	if last {
		s.leaveShared()
	}
	if !more {
		s.snapshotDone(sn.epoch, sn.version, sn.stale, sn.outages)
	}
	return outgoing{bytes: bytes, p: p}
}

// joinShared starts the cursor at the first batch of the feed's shared
// snapshot cur, or of a new one when cur cannot serve it.
func (s *Subscription) joinShared(t *tail, cur *sharedSnap) *sharedSnap {
	s.leaveShared()
	s.countShared(true) // before the snapshot is taken: the log keeps its steps
	sn := cur
	if !sn.usable(t, s.epoch, s.version) {
		sn = s.f.sharedSnapshot(s.epoch, s.version)
	}
	sn.encode()
	sn.users.Add(1)
	s.shared = sharedCursor{active: true, epoch: sn.epoch, version: sn.version}
	return sn
}

// snapshotSteps returns the next batch of the shared snapshot's steps.
func (s *Subscription) snapshotSteps(t *tail) outgoing {
	c := &s.shared
	out := stepsBatch(t, c.at, maxBatchBytes, true, c.until)
	c.at = out.p.version
	if !out.p.more {
		c.stepping = false
		s.snapshotDone(c.epoch, c.at, t.stale, t.outages)
	}
	return out
}

// snapshotDone moves the cursor to the end of a snapshot sent.
func (s *Subscription) snapshotDone(epoch string, version uint64, stale bool, outages uint64) {
	s.epoch, s.version, s.stale, s.sent, s.tailing = epoch, version, stale, true, true
	if stale {
		s.outages = outages
	}
}

// leaveShared stops using the shared snapshot under way, if any, and
// lets the feed drop it when no other subscription is part way through it.
func (s *Subscription) leaveShared() {
	c := &s.shared
	if !c.active {
		return
	}
	c.active = false
	if sn := s.f.snap.Load(); sn != nil && sn.epoch == c.epoch && sn.version == c.version {
		if sn.users.Add(-1) == 0 {
			s.f.snap.CompareAndSwap(sn, nil)
		}
	}
}

// withToken returns a copy of an encoded batch whose token ("", its last
// byte) is the feed's: the first batch of the subscription (§11.11). The
// token is then valid on the subscriber's server.
func (s *Subscription) withToken(batch []byte) []byte {
	out := make([]byte, 0, len(batch)+len(s.f.token)+2)
	out = cborx.AppendText(append(out, batch[:len(batch)-1]...), s.f.token)
	s.tokenSent = true
	captable.Issue(s.f.token, captable.IssuerOf(s.conn))
	return out
}
