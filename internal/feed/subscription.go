package feed

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/callhook"
	"github.com/tether-go/tether/remoteable"
)

var errNoObserver = errors.New("tether: Subscribe needs an observer object of the caller's")

// ApplyMethod is the observer's method a subscription pushes batches to.
const ApplyMethod = "Apply"

// Subscription pushes one feed's changes to one observer, one batch at a
// time: the next batch goes when the observer has applied the last. Its
// queue is a cursor into the feed's log, so a subscriber that falls behind
// costs no memory; once the log no longer reaches back to the cursor the
// subscriber gets a snapshot instead.
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
	cancel context.CancelFunc
	wake   chan struct{}
	once   sync.Once // starts the pusher
	ended  atomic.Bool

	// The cursor: what the observer has been sent. Guarded by f.mu.
	epoch    string
	version  uint64
	stale    bool
	sent     bool
	snap     []Change // the rest of a snapshot being sent
	snapAt   uint64
	snapEp   string
	maxBytes int // batch size in key and value bytes; 0 means maxBatchBytes

	// What the observer has applied, for read-your-writes.
	amu      sync.Mutex
	ackEpoch string
	ackVer   uint64
	acked    chan struct{} // closed and replaced on every ack
}

// CacheSubscription marks s for the broker's counts (roles.Subscription).
func (s *Subscription) CacheSubscription() {}

// Exported starts the pusher once the subscription is on its way to the
// subscriber.
func (s *Subscription) Exported() {
	s.once.Do(func() {
		s.f.mu.Lock()
		s.f.subs[s] = struct{}{}
		s.f.mu.Unlock()
		hooks.add(s)
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
	s.f.mu.Unlock()
	hooks.remove(s)
	s.amu.Lock()
	close(s.acked)
	s.acked = nil
	s.amu.Unlock()
}

func (s *Subscription) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run pushes batches until the subscription ends.
func (s *Subscription) run() {
	defer s.obs.Release()
	defer s.end()
	for {
		b, ok := s.next()
		if !ok {
			return
		}
		if err := s.obs.Call(s.ctx, ApplyMethod, nil, b); err != nil {
			if errors.Is(err, broker.ErrMessageTooLarge) && s.shrink(b) {
				continue // smaller batches, starting over with a snapshot
			}
			return
		}
		s.amu.Lock()
		if s.acked != nil && !b.More {
			s.ackEpoch, s.ackVer = b.Epoch, b.Version
			close(s.acked)
			s.acked = make(chan struct{})
		}
		s.amu.Unlock()
	}
}

// shrink reacts to a batch larger than the subscriber accepts: it halves
// the batch size and makes the next batch a fresh snapshot (a replay may
// hold a step that is gone from the state since). It reports false when a
// snapshot batch held a single entry, which no batch size can carry.
func (s *Subscription) shrink(b *Batch) bool {
	n := len(b.Entries)
	for _, st := range b.Steps {
		n += len(st.Changes)
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.maxBytes == 0 {
		s.maxBytes = maxBatchBytes
	}
	if n <= 1 && b.Snapshot {
		return false // one entry too large for the subscriber
	}
	if n > 1 {
		s.maxBytes = max(s.maxBytes/2, 1024)
	}
	s.snap, s.epoch = nil, "" // forces a snapshot
	return true
}

// next waits for something to send and returns it as a batch.
func (s *Subscription) next() (*Batch, bool) {
	for {
		s.f.mu.Lock()
		b := s.build()
		s.f.mu.Unlock()
		if b != nil {
			return b, true
		}
		select {
		case <-s.wake:
		case <-s.ctx.Done():
			return nil, false
		}
	}
}

// build makes the next batch, advancing the cursor, or returns nil when
// the observer is up to date. f.mu is held.
func (s *Subscription) build() *Batch {
	f := s.f
	if s.snap == nil && (s.epoch != f.epoch || (s.version != f.version && f.replayFrom(s.version) < 0)) {
		// Behind the log, ahead of it, or another epoch: a snapshot.
		s.snap = make([]Change, 0, len(f.entries))
		for k, v := range f.entries {
			s.snap = append(s.snap, Change{Key: []byte(k), Value: v})
		}
		s.snapAt, s.snapEp = f.version, f.epoch
		if len(s.snap) == 0 {
			s.snap = []Change{}
		}
	}
	limit := s.maxBytes
	if limit == 0 {
		limit = maxBatchBytes
	}
	if s.snap != nil {
		n, size := 0, 0
		for n < len(s.snap) && n < maxBatchChanges && size < limit {
			size += len(s.snap[n].Key) + len(s.snap[n].Value)
			n++
		}
		b := &Batch{Epoch: s.snapEp, Version: s.snapAt, Stale: f.stale, Snapshot: true,
			Entries: s.snap[:n:n], More: n < len(s.snap)}
		s.snap = s.snap[n:]
		if !b.More {
			s.snap = nil
			s.epoch, s.version, s.stale, s.sent = s.snapEp, s.snapAt, f.stale, true
		}
		return b
	}
	if s.version != f.version {
		i := f.replayFrom(s.version)
		b := &Batch{Epoch: f.epoch, Stale: f.stale}
		n, size := 0, 0
		for ; i < len(f.log) && n < maxBatchChanges && size < limit; i++ {
			st := f.log[i]
			b.Steps = append(b.Steps, st)
			n += len(st.Changes)
			for _, c := range st.Changes {
				size += len(c.Key) + len(c.Value)
			}
			b.Version = st.Version
		}
		s.version, s.stale, s.sent = b.Version, f.stale, true
		return b
	}
	if !s.sent || s.stale != f.stale {
		s.stale, s.sent = f.stale, true
		return &Batch{Epoch: f.epoch, Version: f.version, Stale: f.stale}
	}
	return nil
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

// hooks is the read-your-writes hook: the broker asks it, around every
// handler, which subscriptions on the caller's connection the handler
// changed, and waits until their observers have applied the change.
var hooks = &barrier{conns: map[*broker.Conn]map[*Subscription]struct{}{}}

func init() { callhook.Set(hooks) }

type barrier struct {
	n     atomic.Int64 // subscriptions in the process: 0 makes Begin free
	mu    sync.Mutex
	conns map[*broker.Conn]map[*Subscription]struct{}
}

func (b *barrier) add(s *Subscription) {
	b.mu.Lock()
	m := b.conns[s.conn]
	if m == nil {
		m = map[*Subscription]struct{}{}
		b.conns[s.conn] = m
	}
	m[s] = struct{}{}
	b.mu.Unlock()
	b.n.Add(1)
}

func (b *barrier) remove(s *Subscription) {
	b.mu.Lock()
	if m := b.conns[s.conn]; m != nil {
		if _, ok := m[s]; ok {
			delete(m, s)
			b.n.Add(-1)
		}
		if len(m) == 0 {
			delete(b.conns, s.conn)
		}
	}
	b.mu.Unlock()
}

// mark is one subscription's feed position when a handler started.
type mark struct {
	s       *Subscription
	epoch   string
	version uint64
}

// Begin notes the feed version of every subscription on conn. Calls of
// the cache protocol itself are never held back: an Apply waiting for the
// far side's acknowledgements would deadlock two peers that mirror each
// other's models.
func (b *barrier) Begin(conn, target any) any {
	if b.n.Load() == 0 {
		return nil
	}
	switch target.(type) {
	case *observer, *Publisher, *Subscription:
		return nil
	}
	c, _ := conn.(*broker.Conn)
	b.mu.Lock()
	m := b.conns[c]
	subs := make([]*Subscription, 0, len(m))
	for s := range m {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	if len(subs) == 0 {
		return nil
	}
	marks := make([]mark, len(subs))
	for i, s := range subs {
		s.f.mu.Lock()
		marks[i] = mark{s: s, epoch: s.f.epoch, version: s.f.version}
		s.f.mu.Unlock()
	}
	return marks
}

// End waits, for each subscription whose feed changed while the handler
// ran, until its observer has applied the feed's current version.
func (b *barrier) End(ctx context.Context, conn any, token any) {
	for _, m := range token.([]mark) {
		m.s.f.mu.Lock()
		epoch, v := m.s.f.epoch, m.s.f.version
		m.s.f.mu.Unlock()
		if epoch == m.epoch && v > m.version {
			m.s.waitApplied(ctx, epoch, v)
		}
	}
}
