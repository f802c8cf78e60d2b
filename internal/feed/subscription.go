package feed

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

var errNoObserver = errors.New("tether: Subscribe needs an observer object of the caller's")

// ApplyMethod is the observer's method a subscription pushes batches to.
const ApplyMethod = "Apply"

// Subscription pushes one feed's changes to one observer, one batch at a
// time: the next batch goes when the observer has applied the last. Its
// queue is a cursor into the feed's log, so a subscriber that falls behind
// costs no memory; once the log no longer reaches back to the cursor the
// subscriber gets a snapshot instead. A snapshot is a cursor too, into the
// feed's slots (snapCursor): a subscriber that stops acknowledging holds at
// most the one batch in flight, whatever the model's size.
//
// It is sent by reference to the subscriber, who releases it to end the
// subscription. Its pusher starts when the broker exports it and stops
// when the export ends (released, or the connection closed) or a push
// fails.
type Subscription struct {
	remoteable.Referenceable
	f    *Feed
	obs  *broker.Ref
	conn *broker.Conn

	ctx    context.Context
	snap0  context.Context // ctx marked for a snapshot's first batch (snapmark)
	cancel context.CancelFunc
	once   sync.Once // starts the pusher
	ended  atomic.Bool

	// The cursor: what the observer has been sent. Only the pusher reads
	// and writes it, under f.mu on the locked path (build) and without it
	// on the live tail (fromTail); snap, which compaction moves, is
	// guarded by f.mu.
	epoch    string
	version  uint64
	stale    bool
	sent     bool
	outages  uint64     // the feed's outages the observer has been told of
	snap     snapCursor // the snapshot being sent, if active
	tailing  bool       // no snapshot under way: the live tail may serve the cursor
	snapOwn  bool       // snap is active: a snapshot of its own (the locked path) is under way
	shared   sharedCursor
	maxBytes int // batch size in key and value bytes; 0 means maxBatchBytes
	// tokenSent records that the feed's token went with a batch: it goes
	// with the first one only.
	tokenSent bool
	// inShared records that the cursor is counted in the feed's sharing
	// (see countShared).
	inShared bool

	// What the observer has applied, for read-your-writes.
	amu      sync.Mutex
	ackEpoch string
	ackVer   uint64
	acked    chan struct{} // closed and replaced on every ack
}

// CacheModel returns the model the subscription's feed belongs to: a
// mirror sent back to the process that owns its source travels as a
// reference to its subscription (Publisher.CacheHome), which comes home
// decoded to the model itself.
func (s *Subscription) CacheModel() any { return s.f.Owner() }

// CacheSubscription marks s for the broker's counts (its cacheSubscription
// seam: the subscription quota and ConnStats.Observers).
func (s *Subscription) CacheSubscription() {}

// Exported starts the pusher once the subscription is on its way to the
// subscriber.
func (s *Subscription) Exported() {
	s.once.Do(func() {
		s.f.mu.Lock()
		s.f.subs[s] = struct{}{}
		s.outages = s.f.outages
		s.f.unlock()
		go s.run()
	})
}

// Unexported ends the subscription: the subscriber released it or its
// connection ended.
func (s *Subscription) Unexported() { s.end() }

func (s *Subscription) end() {
	if s.ended.Swap(true) {
		return
	}
	s.cancel()
	s.f.mu.Lock()
	delete(s.f.subs, s)
	s.stopSnapshot()
	s.f.unlock()
	s.amu.Lock()
	close(s.acked)
	s.acked = nil
	s.amu.Unlock()
}

// run pushes batches until the subscription ends.
func (s *Subscription) run() {
	defer s.obs.Release()
	defer s.end()
	defer s.leaveShared()
	defer s.countShared(false)
	for {
		out, ok := s.next()
		s.countShared(s.shared.active || s.shared.stepping)
		if !ok {
			return
		}
		// Only what the acknowledgement needs outlives the call: while a
		// subscriber sits on a batch the subscription keeps its cursor (a
		// version), not the batch, nor a step of the log.
		p := out.p
		// The batch goes as the bytes it was encoded to, shared by every
		// subscription sent the same steps: the broker copies them into
		// the call's frame as they are (encodedBatch).
		ctx := s.ctx
		if p.first {
			ctx = s.snap0 // the client interceptors see broker.CallSnapshot
		}
		if err := s.obs.Call(ctx, ApplyMethod, nil, encodedBatch(out.bytes)); err != nil {
			if errors.Is(err, broker.ErrMessageTooLarge) && s.shrink(p) {
				continue // smaller batches, starting over with a snapshot
			}
			return
		}
		s.amu.Lock()
		if s.acked != nil && !p.more {
			s.ackEpoch, s.ackVer = p.epoch, p.version
			close(s.acked)
			s.acked = make(chan struct{})
		}
		s.amu.Unlock()
	}
}

// countShared counts the cursor in the feed's sharing while it is part
// way through a shared snapshot, its entries or the steps that follow
// them, so that the log keeps those steps as it does for a snapshot of
// the subscription's own (trimLog): with the log bounded in bytes, a
// snapshot of large values that takes longer to send than the owner
// takes to write the bound would otherwise start again for ever. Only
// the pusher calls it.
func (s *Subscription) countShared(in bool) {
	if in == s.inShared {
		return
	}
	s.inShared = in
	if in {
		s.f.sharing.Add(1)
	} else {
		s.f.sharing.Add(-1)
	}
}

// pushed is what a subscription remembers of the batch in flight.
type pushed struct {
	epoch    string
	version  uint64
	more     bool
	snapshot bool
	first    bool // the first batch of a snapshot
	changes  int  // entries and the changes of steps
}

func pushedOf(b *Batch) pushed {
	n := len(b.Entries)
	for _, st := range b.Steps {
		n += len(st.Changes)
	}
	return pushed{epoch: b.Epoch, version: b.Version, more: b.More, snapshot: b.Snapshot, first: b.First, changes: n}
}

// shrink reacts to a batch larger than the subscriber accepts: it halves
// the batch size and makes the next batch a fresh snapshot (a replay may
// hold a step that is gone from the state since). It reports false when a
// snapshot batch held a single change, which no batch size can carry.
func (s *Subscription) shrink(b pushed) bool {
	s.f.mu.Lock()
	defer s.f.unlock()
	if s.maxBytes == 0 {
		s.maxBytes = maxBatchBytes
	}
	if b.changes <= 1 && b.snapshot {
		return false // one entry too large for the subscriber
	}
	if b.changes > 1 {
		s.maxBytes = max(s.maxBytes/2, 1024)
	}
	s.stopSnapshot()
	s.leaveShared()
	s.shared = sharedCursor{} // the shared snapshot's steps too: one of its own follows
	s.epoch = ""              // forces a new snapshot
	s.tokenSent = false       // the batch that carried it did not arrive
	return true
}

// outgoing is a batch ready to send: its encoding, and what the
// subscription remembers of it.
type outgoing struct {
	bytes []byte
	p     pushed
}

// next waits for something to send and returns it, encoded. A cursor on
// the live tail (onTail) is served without the feed's lock; anything else
// (the first batch, a snapshot, a brief outage to report) is built under
// it (locked).
func (s *Subscription) next() (outgoing, bool) {
	for {
		if s.ended.Load() {
			return outgoing{}, false
		}
		t := s.f.tryCurrent()
		if s.wantsShared(t) {
			return s.fromShared(t), true
		}
		if s.onTail(t) {
			if out, ok := s.fromTail(t); ok {
				return out, true
			}
		} else {
			out, ok, seen := s.locked()
			if ok || seen == nil {
				return out, ok
			}
			t = seen
		}
		if !s.await(t) {
			return outgoing{}, false
		}
	}
}

// await waits until the feed publishes a tail other than t, reporting
// false when the subscription ended first.
func (s *Subscription) await(t *tail) bool {
	bc := s.f.bell.wait()
	defer bc.done()
	// Checked after registering: a tail published before the
	// registration counted rang no bell for this pusher, and a change
	// made before it may have left its tail pending (Feed.publish). The
	// pusher publishes a pending tail itself only when the lock is free:
	// a pusher waiting for the lock, preempted in the crowd, would hold
	// up the writer behind it. When the lock is held its holder publishes
	// the tail as it unlocks (Feed.unlock), and rings.
	for {
		if s.f.tail.Load() != t {
			return true
		}
		if !s.f.pending.Load() || !s.f.mu.TryLock() {
			break
		}
		s.f.publishPending()
		s.f.unlock()
	}
	select {
	case <-bc.ch:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// locked builds the next batch under the feed's lock. It returns the
// tail current when it found nothing to send, or nil when the
// subscription ended.
func (s *Subscription) locked() (outgoing, bool, *tail) {
	s.f.mu.Lock()
	if s.ended.Load() {
		// end has run (it takes f.mu after setting ended): a snapshot
		// started now would never be counted out of f.snapshots.
		s.f.unlock()
		return outgoing{}, false, nil
	}
	b := s.build()
	s.snapOwn = s.snap.active
	s.tailing = !s.snapOwn
	s.f.publishPending()
	t := s.f.tail.Load()
	s.f.unlock()
	if b == nil {
		return outgoing{}, false, t
	}
	return outgoing{bytes: appendBatch(nil, b), p: pushedOf(b)}, true, nil
}

// onTail reports whether the live tail t can serve the cursor: no
// snapshot under way, the token sent, the same epoch, no outage left to
// report, and t's log holds the steps after the cursor's version.
func (s *Subscription) onTail(t *tail) bool {
	return s.tailing && s.tokenSent && s.epoch == t.epoch && s.outages == t.outages &&
		(s.version == t.version || t.find(s.version) >= 0)
}

// fromTail makes the next batch from the live tail, without the feed's
// lock, by rules 2 and 3 of docs/protocol.md §11.6 (steps, or a status
// batch), or reports false when the observer is up to date.
func (s *Subscription) fromTail(t *tail) (outgoing, bool) {
	if s.version != t.version {
		return s.stepsOut(t), true
	}
	if s.sent && s.stale == t.stale {
		return outgoing{}, false
	}
	s.stale, s.sent = t.stale, true
	buf := appendBatchHead(nil, t.epoch, t.version, t.stale, false, false)
	buf = cborx.AppendNull(cborx.AppendNull(buf))
	buf = appendBatchTail(buf, false, "")
	return outgoing{bytes: buf, p: pushed{epoch: t.epoch, version: t.version}}, true
}

// stepsOut returns the batch of steps after the cursor and moves the
// cursor past them. Subscriptions at the same version with the default
// batch size share one batch: the last one built is kept (f.shared) and
// sent again to every cursor at its start.
func (s *Subscription) stepsOut(t *tail) outgoing {
	shareable := s.maxBytes == 0
	sb := s.f.shared.Load()
	if !shareable || sb == nil || sb.epoch != t.epoch || sb.from != s.version || sb.stale != t.stale {
		sb = &sharedBatch{epoch: t.epoch, from: s.version, stale: t.stale, out: stepsBatch(t, s.version, s.limit(), false, 0)}
		if shareable {
			s.f.shared.Store(sb)
		}
	}
	s.version, s.stale, s.sent = sb.out.p.version, sb.stale, true
	return sb.out
}

// sharedBatch is a batch of steps of the live tail with the cursor it
// starts at.
type sharedBatch struct {
	epoch string
	from  uint64
	stale bool
	out   outgoing
}

// stepsBatch encodes the batch of the logged steps after version from,
// which t must hold, taken while the batch is within bounds as
// Feed.stepsFrom takes them, from each step's encoding made once. For a
// snapshot's steps (snapshot set) the batch has more set until its steps
// reach until.
func stepsBatch(t *tail, from uint64, limit int, snapshot bool, until uint64) outgoing {
	i := t.find(from)
	j, n, size, total := i, 0, 0, 0
	fresh := false // some step no batch has encoded yet
	for ; j < len(t.log) && n < maxBatchChanges && size < limit; j++ {
		ls := t.log[j]
		n += len(ls.Changes)
		size += ls.size
		total += ls.encodedLen()
		fresh = fresh || ls.enc.Load() == nil
	}
	steps := t.log[i:j]
	last := steps[len(steps)-1].Version
	more := snapshot && last < until
	if fresh {
		t.encodeFresh(steps)
	}
	buf := make([]byte, 0, total+len(t.epoch)+32)
	buf = appendBatchHead(buf, t.epoch, last, t.stale, snapshot, more)
	buf = cborx.AppendArray(buf, len(steps))
	for _, ls := range steps {
		buf = append(buf, *ls.enc.Load()...)
	}
	if snapshot {
		buf = cborx.AppendArray(buf, 0) // a snapshot's batch of steps has no entries
	} else {
		buf = cborx.AppendNull(buf)
	}
	buf = appendBatchTail(buf, false, "")
	return outgoing{bytes: buf, p: pushed{epoch: t.epoch, version: last, changes: n, more: more, snapshot: snapshot}}
}

// limit is the cursor's batch size in key and value bytes.
func (s *Subscription) limit() int {
	if s.maxBytes == 0 {
		return maxBatchBytes
	}
	return s.maxBytes
}

// snapCursor is a snapshot under way (docs/protocol.md §11.6, rule 1):
// first the entries that were live when it started, read from the feed's
// slots one batch at a time at whatever version the feed is then, and then
// the logged steps from the version it started at, until they reach the
// version at which the last entries were read. Every entry sent holds its
// value at some version between the start and that one, so the mirror that
// applies those steps to the entries holds the state at the last step's
// version, consistently. When the log no longer reaches back to where the
// steps must continue, or the epoch changes, the snapshot starts again.
type snapCursor struct {
	active  bool
	first   bool // the next batch is the snapshot's first
	epoch   string
	from    uint64 // the version it started at: slots born later are skipped
	pos     int    // the next slot to read (moved by compaction)
	scanned bool   // every slot has been read
	until   uint64 // the version when the last slot was read
	at      uint64 // how far the steps sent reach (from, until the first step)
}

// startSnapshot (re)starts the snapshot at the feed's current version.
// f.mu held.
func (s *Subscription) startSnapshot() {
	f := s.f
	if !s.snap.active {
		f.snapshots++
	}
	s.snap = snapCursor{active: true, first: true, epoch: f.epoch, from: f.version, at: f.version}
}

// stopSnapshot ends the snapshot under way, if any. f.mu held.
func (s *Subscription) stopSnapshot() {
	if s.snap.active {
		s.snap.active = false
		s.f.snapshots--
	}
}

// covered reports whether the feed can replay the steps after version v:
// it is at v, or a logged step starts there. f.mu held.
func (f *Feed) covered(v uint64) bool { return v == f.version || f.replayFrom(v) >= 0 }

// build makes the next batch, advancing the cursor, or returns nil when
// the observer is up to date. f.mu is held.
func (s *Subscription) build() *Batch {
	b := s.buildOne()
	if b != nil && !s.tokenSent {
		// The first batch carries the feed's token, valid from now on on
		// the subscriber's server (captable.Issue).
		b.Token, s.tokenSent = s.f.token, true
		captable.Issue(s.f.token, captable.IssuerOf(s.conn))
	}
	return b
}

// buildOne is build without the token. f.mu is held.
func (s *Subscription) buildOne() *Batch {
	f := s.f
	if s.outages != f.outages && !f.stale && s.sent && !s.stale && !s.snap.active && s.epoch == f.epoch {
		// The feed's source went out of reach and came back while a batch
		// was in flight: the observer still hears of it, as a stale batch
		// now and the live one next, rather than never.
		s.outages, s.stale = f.outages, true
		return &Batch{Epoch: s.epoch, Version: s.version, Stale: true}
	}
	b := s.buildNext()
	if b != nil && b.Stale {
		s.outages = f.outages
	}
	return b
}

// buildNext is build without the report of a brief outage. f.mu is held.
func (s *Subscription) buildNext() *Batch {
	f := s.f
	if s.snap.active && (s.snap.epoch != f.epoch || !f.covered(s.snap.at)) {
		// The model moved on too far (or was replaced) for the snapshot's
		// steps to be replayed: what was sent of it is worthless.
		s.startSnapshot()
	}
	if !s.snap.active && (s.epoch != f.epoch || !f.covered(s.version)) {
		// Behind the log, ahead of it, or another epoch: a snapshot.
		s.startSnapshot()
	}
	limit := s.limit()
	if s.snap.active {
		return s.buildSnapshot(limit)
	}
	if s.version != f.version {
		b := &Batch{Epoch: f.epoch, Stale: f.stale}
		b.Steps, b.Version = f.stepsFrom(s.version, 0, 0, limit)
		s.version, s.stale, s.sent = b.Version, f.stale, true
		return b
	}
	if !s.sent || s.stale != f.stale {
		s.stale, s.sent = f.stale, true
		return &Batch{Epoch: f.epoch, Version: f.version, Stale: f.stale}
	}
	return nil
}

// buildSnapshot makes the snapshot's next batch: entries while there are
// slots left to read, then steps, within the batch's bounds. f.mu is held.
func (s *Subscription) buildSnapshot(limit int) *Batch {
	f, c := s.f, &s.snap
	b := &Batch{Epoch: c.epoch, Stale: f.stale, Snapshot: true, First: c.first, Entries: []Change{}}
	c.first = false
	n, size := 0, 0
	if !c.scanned {
		b.Entries = make([]Change, 0, min(len(f.index), maxBatchChanges))
		// Dead slots take no room in the batch; compaction keeps them to
		// about as many as the live ones, so the walk stays bounded.
		for ; c.pos < len(f.slots) && n < maxBatchChanges && size < limit; c.pos++ {
			sl := &f.slots[c.pos]
			if !sl.live || sl.born > c.from {
				continue // deleted, or added since the start: the steps bring it
			}
			b.Entries = append(b.Entries, Change{Key: sl.key, Value: sl.value})
			n++
			size += len(sl.key) + len(sl.value)
		}
		if c.pos >= len(f.slots) {
			c.scanned, c.until = true, f.version
		}
	}
	if c.scanned {
		b.Steps, c.at = f.stepsFrom(c.at, n, size, limit)
	}
	b.Version = c.at
	b.More = !c.scanned || c.at < c.until
	if !b.More {
		s.stopSnapshot()
		s.epoch, s.version, s.stale, s.sent = c.epoch, c.at, f.stale, true
	}
	return b
}

// stepsFrom returns the logged steps after version v, taken while the
// batch, which already holds n changes of size bytes, is within bounds
// (the last step taken may pass them), and the version they reach. The
// log must cover v. f.mu held.
func (f *Feed) stepsFrom(v uint64, n, size, limit int) ([]Step, uint64) {
	var steps []Step
	for i := f.replayFrom(v); i >= 0 && i < len(f.log) && n < maxBatchChanges && size < limit; i++ {
		st := f.log[i].Step
		steps = append(steps, st)
		n += len(st.Changes)
		for _, c := range st.Changes {
			size += len(c.Key) + len(c.Value)
		}
		v = st.Version
	}
	return steps, v
}

// waitApplied returns once the observer has applied version v of epoch,
// the subscription ended or ctx ended.
func (s *Subscription) waitApplied(ctx context.Context, epoch string, v uint64) {
	for {
		s.amu.Lock()
		ch := s.acked
		done := ch == nil || (s.ackEpoch == epoch && s.ackVer >= v)
		s.amu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// mark is the subscription's feed position when a handler started on the
// subscriber's connection.
type mark struct {
	epoch   string
	version uint64
}

// ReplyMark notes the feed's position before a handler runs on the
// connection that holds s (the broker's replyGate seam, for
// read-your-writes). Calls of the cache protocol itself are never held
// back: an Apply waiting for the far side's acknowledgements would deadlock
// two peers that mirror each other's models.
func (s *Subscription) ReplyMark(target any) any {
	switch target.(type) {
	case *observer, *Publisher, *Subscription:
		return nil
	}
	if s.ended.Load() {
		return nil // nothing will be applied any more
	}
	t := s.f.current()
	return mark{epoch: t.epoch, version: t.version}
}

// ReplyWait waits, when the feed changed while the handler ran, until the
// observer has applied the feed's current version, s ended or ctx ended.
func (s *Subscription) ReplyWait(ctx context.Context, before any) {
	m := before.(mark)
	t := s.f.current()
	if t.epoch == m.epoch && t.version > m.version {
		s.waitApplied(ctx, t.epoch, t.version)
	}
}
