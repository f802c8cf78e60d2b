package feed

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fxamacker/cbor/v2"
	"github.com/google/uuid"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/snapmark"
	"github.com/tether-go/tether/remoteable"
)

// Change sets or deletes one entry. Key and Value are CBOR items.
type Change struct {
	_       struct{} `cbor:",toarray"`
	Key     cbor.RawMessage
	Value   cbor.RawMessage // null when Deleted
	Deleted bool
}

// Step takes the state from version From to version Version. A model's own
// steps hold one change each (Version = From+1); a mirror that had to resync
// logs the difference it applied as one step spanning the gap.
type Step struct {
	_       struct{} `cbor:",toarray"`
	From    uint64
	Version uint64
	Changes []Change
}

// Batch is what a subscription pushes to its observer in one Apply call.
// docs/protocol.md §11.5 and §11.6 say what each field means and how a
// snapshot is spread over several batches.
type Batch struct {
	_        struct{} `cbor:",toarray"`
	Epoch    string
	Version  uint64 // the state's version once the batch is applied; in a snapshot, how far its steps reach
	Stale    bool   // the feed's own source is out of reach
	Snapshot bool   // the batch is part of a snapshot: Entries, then Steps, of the state being rebuilt
	More     bool   // the snapshot continues in the next batch
	Steps    []Step // consecutive steps: the changes after the mirror's version, or, in a snapshot, after its start
	Entries  []Change
	First    bool // the first batch of a snapshot: whatever the mirror collected before is discarded
	// Token is the feed's capability (§11.11), on the first batch of each
	// subscription and on no other: the subscriber presents it on a new
	// connection to find the feed again.
	Token string
}

// Limits of one batch, well under the smallest message size a peer would
// sensibly accept and under the CBOR item limit.
const (
	maxBatchChanges = 2048
	maxBatchBytes   = 256 << 10
)

// entryLevel is the CBOR level at which a key or value travels in an
// Apply call's steps, the deepest place an entry goes:
//
//	[3, id, target, "Apply", timeout, [Batch]]   levels 1 and 2
//	Batch = [..., [Step...], ...]                levels 3 and 4
//	Step = [from, version, [Change...]]          levels 5 and 6
//	Change = [key, value, deleted]               level 7; key and value at 8
//
// (In a snapshot's entries an entry is at level 6.)
const entryLevel = 8

// EntryDepth is how many levels of arrays, maps and tags a model's key or
// value may nest: a message may nest cborx.DefaultLimits.MaxDepth levels,
// and an entry starts at entryLevel. A deeper entry could never reach a
// mirror, whose connection refuses every batch that carries it.
var EntryDepth = cborx.DefaultLimits.MaxDepth - entryLevel + 1

// CheckEntry refuses the encoding of a key or value that nests deeper
// than EntryDepth, with an error that matches broker.ErrTooDeep. A model
// checks what it is given before it changes anything, so that it never
// holds an entry it cannot send.
func CheckEntry(b []byte) error {
	if len(b) <= EntryDepth {
		return nil // each level takes a byte at least
	}
	err := cborx.CheckDepth(b, EntryDepth)
	if errors.Is(err, cborx.ErrLimit) {
		return fmt.Errorf("%w: a model's key or value may nest %d levels of arrays, maps and tags, since its mirrors receive it %d levels down in a cache batch; flatten it or store it as bytes",
			broker.ErrTooDeep, EntryDepth, entryLevel-1)
	}
	return err
}

// DefaultLogSize and DefaultLogBytes bound the log of a feed made with no
// size given: it keeps the last DefaultLogSize changes, fewer when those
// take more than DefaultLogBytes (their keys and values, plus
// logEntryCost each). The log is what a subscription that fell behind is
// served from, so it is how far a mirror may fall behind its model (a
// burst of Sets faster than the link, an outage) and still get every
// change rather than a snapshot, whose differences its watchers see as
// Merged events. 32,768 changes hold a burst of 20,000 Sets (the fan-out
// bench, docs/benchmarks.md), which a local writer makes in tens of
// milliseconds, far faster than a mirror across a network applies them;
// 4,096 did not, and a mirror whose watchers kept up still got merged
// events.
//
// The memory is the feed's, not each subscriber's: a subscription is a
// cursor into the log, and every subscription reads the same immutable
// steps (and their encoding, made once), so a thousand mirrors cost what
// one does. The byte bound keeps a model of large values from holding
// DefaultLogSize of them (4,096 values of 64 KiB were 256 MiB under the
// old count-only bound; they are now 8 MiB).
const (
	DefaultLogSize  = 1 << 15
	DefaultLogBytes = 8 << 20
)

// logEntryCost is what the log counts against its byte bound for each
// change beyond its key and value: the step and change that hold it, its
// encoding and its place in the log's array, about 150 bytes for a change
// of small keys and values, of which the key and value are counted apart.
const logEntryCost = 128

// Event is one change as applied to a feed, for the typed layer above.
type Event struct {
	Key, Value []byte
	Deleted    bool
	Prev       []byte // the value before the change, if HadPrev
	HadPrev    bool
	Version    uint64
	Decoded    any // what the Sink's Decode returned for this change
}

// Feed is one model's state and its subscriptions. Its methods are safe for
// concurrent use.
//
// The entries live in a slot array, in the order their keys were added,
// with an index from key to slot: a snapshot is then a position in that
// array that moves one batch at a time (see Subscription), never a copy of
// the state, so a subscriber that stops acknowledging costs the same
// whatever the model's size. A deleted entry leaves a dead slot behind, so
// that the positions of snapshots under way stay valid; once more than half
// the slots are dead they are compacted, and those positions moved with
// them.
type Feed struct {
	mu      sync.Mutex
	epoch   string
	version uint64
	slots   []slot
	index   map[string]int // live key → its slot
	dead    int            // dead slots
	stale   bool
	outages uint64 // times stale became true, so that a brief one is not lost
	// log holds the recent steps, oldest first. Its elements are never
	// changed once appended, only dropped from the front by reslicing:
	// every tail published shares the backing array (see publish).
	log []*logStep
	// unlogged is set for a mirror's feed until its publisher is first
	// sent to a peer (Publisher.Exported) or subscribed to
	// (Publisher.Subscribe): until then nobody can follow
	// it, so the steps it applies are not logged (logOne, applySteps). A
	// leaf mirror, which most are, then never pays for a log: a thousand
	// mirrors in one process would otherwise each keep up to a log's
	// bound of pointers, made, grown and scanned by the collector, for
	// subscribers that never come.
	unlogged atomic.Bool
	// source, set for a mirror's feed whose typed layer holds every
	// entry's bytes (a StateSource), is that layer; lazy, guarded by mu,
	// says the feed keeps no state of its own (slots, index, stateBytes
	// are empty) but takes it from source when it needs it (keepState):
	// a leaf mirror, nobody following it, would otherwise keep every key
	// and value twice, and pay for a second map per change.
	source   StateSource
	lazy     bool
	logLen   int // changes in log
	logBytes int // their keys and values, plus logEntryCost each
	logMax   int
	// logMaxBytes bounds logBytes, or is 0 when the feed was given a size
	// (then the log keeps logMax changes whatever their size).
	logMaxBytes int
	// stateBytes is the keys and values of the entries, which the log's
	// byte bound grows by while snapshots are under way (trimLog).
	stateBytes int
	// sharing counts the subscriptions part way through a shared
	// snapshot (Subscription.countShared): the log grows by the state
	// while any is, as for snapshots.
	sharing atomic.Int64
	subs    map[*Subscription]struct{}
	// tail is the state the live subscriptions read without mu, published
	// after a change when some pusher waits for it, else when a reader
	// next asks for it (publish, current); pending says the state changed
	// since tail was published. bell wakes the pushers waiting for the
	// next tail; shared is the last batch of steps built for the
	// subscriptions of the live tail, sent to all of those at its version.
	tail    atomic.Pointer[tail]
	pending atomic.Bool
	bell    bell
	shared  atomic.Pointer[sharedBatch]
	// snap is the snapshot shared by the subscriptions that need one
	// (snapshare.go), while some subscription is part way through it.
	snap   atomic.Pointer[sharedSnap]
	snapMu sync.Mutex // orders the taking of shared snapshots (sharedSnapshot)
	// encMu is held by a pusher while it encodes the logged steps no batch
	// has encoded yet (encodeFresh), so that pushers building batches of
	// the same new steps at once encode them once, into one buffer.
	encMu sync.Mutex
	// token is the feed's capability (internal/captable), issued to its
	// subscribers; lost is set when a mirror's feed can no longer follow
	// its source, and refuses new subscriptions.
	token string
	lost  error
	// snapshots counts the subscriptions with a snapshot under way, which
	// the log keeps more steps for (appendLog).
	snapshots int
	// stepSlab is what is left of the slab a model's next steps are
	// taken from (appendChange), and slabSize the size of the last one.
	stepSlab []modelStep
	slabSize int
	pub      *Publisher
	// owner is the model the feed belongs to, or, for a mirror the feed
	// must not keep alive, a func() any that returns it while it lives
	// (see Owner).
	owner any
	// home, set for a mirror's feed, returns the mirror's subscription to
	// its source when that subscription lives on the given connection
	// (see Publisher.CacheHome).
	home func(*broker.Conn) *broker.Ref
}

// slot is one entry of a feed, or, when not live, what is left of a
// deleted one until compaction.
type slot struct {
	key   []byte
	value []byte
	// born is the version at which the key took this slot: a snapshot
	// started at an earlier version skips the slot (the key reaches the
	// mirror through the snapshot's steps), so that no snapshot sends a
	// key twice, even one deleted and added again while it is under way.
	born uint64
	live bool
}

// minCompact is the fewest slots worth compacting.
const minCompact = 64

// New returns an empty feed with a new epoch that keeps the last logSize
// changes, or, if logSize <= 0, the last DefaultLogSize changes within
// DefaultLogBytes. owner is the model the feed
// belongs to: a reference to the feed that comes home decodes to it. An
// owner the feed must not keep reachable (a mirror, which is collected
// when its user lets go of it) is given as a func() any returning it, or
// nil once it is gone.
func New(logSize int, owner any) *Feed {
	maxBytes := 0
	if logSize <= 0 {
		logSize, maxBytes = DefaultLogSize, DefaultLogBytes
	}
	f := &Feed{
		epoch:       uuid.NewString(),
		index:       map[string]int{},
		logMax:      logSize,
		logMaxBytes: maxBytes,
		subs:        map[*Subscription]struct{}{},
		owner:       owner,
	}
	f.pub = &Publisher{f: f}
	f.token = captable.Register(f.pub)
	f.publishNow() // the tail is never nil
	return f
}

// logStep is one step of the log with what the live tail needs of it:
// immutable once appended, but for its encoding, made once, the first time
// a batch needs it.
type logStep struct {
	Step
	size int                    // the bytes of its keys and values
	enc  atomic.Pointer[[]byte] // the step's CBOR (encoded)
}

// encodedLen returns the length of the step's CBOR: what appendStep
// appends for it.
func (ls *logStep) encodedLen() int {
	if p := ls.enc.Load(); p != nil {
		return len(*p)
	}
	n := 1 + headLen(ls.From) + headLen(ls.Version) + 1 // the array, From, Version, null
	if ls.Changes != nil {
		n += headLen(uint64(len(ls.Changes))) - 1
		for i := range ls.Changes {
			c := &ls.Changes[i]
			n += 2 + max(len(c.Key), 1) + max(len(c.Value), 1) // the array, the key, the value, the flag
		}
	}
	return n
}

// headLen returns the length of a CBOR head of argument v.
func headLen(v uint64) int {
	switch {
	case v < 24:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

// encodeFresh encodes the steps of a batch that no batch has encoded
// yet, all into one buffer of their exact size, and keeps those bytes as
// the steps' encodings, their slice headers in one array: no buffer per
// step, nor the growing of one from nothing. A step then keeps reachable
// no bytes but the encodings of the steps encoded beside it.
//
// It holds the feed's encMu while it does so. The pushers woken by one
// change all build a batch of its steps at once (the subscriptions at one
// version too, before one of them stores it as the shared batch): each
// encoding them into a buffer of its own, racing to store each step's
// encoding, kept every buffer that won some step reachable, whole,
// through those steps: up to one encoding of the log per pusher running
// in parallel (TestRacingPushersKeepOneEncoding). Under the lock, the
// first encodes and the others find the steps encoded. Steps a mirror
// logged may be logged by the feeds of other mirrors of the same model
// in this process too (recentBatches.logged), which hold other locks:
// those race, and keep the first encoding stored, but may keep a lost
// one reachable beside it.
func (t *tail) encodeFresh(steps []*logStep) {
	t.encMu.Lock()
	defer t.encMu.Unlock()
	fresh, freshBytes := 0, 0
	for _, ls := range steps {
		if ls.enc.Load() == nil {
			fresh++
			freshBytes += ls.encodedLen()
		}
	}
	if fresh == 0 {
		return
	}
	enc := make([]byte, 0, freshBytes)
	slots := make([][]byte, fresh)
	k := 0
	for _, ls := range steps {
		// A step counted above and encoded since (by a feed sharing it)
		// leaves its slot unused: a step encoded stays so, and no more
		// than fresh steps are left to encode.
		if ls.enc.Load() != nil || k == fresh {
			continue
		}
		start := len(enc)
		enc = appendStep(enc, &ls.Step)
		slots[k] = enc[start:len(enc):len(enc)]
		ls.enc.CompareAndSwap(nil, &slots[k])
		k++
	}
}

// tail is a feed's state as the subscriptions of its live tail read it,
// without the feed's lock: published whole after every change, never
// modified afterwards.
type tail struct {
	epoch   string
	version uint64
	stale   bool
	outages uint64
	log     []*logStep  // a window of the feed's log: consecutive steps, oldest first
	encMu   *sync.Mutex // the feed's encMu (encodeFresh)
}

// find returns the index of the logged step that starts at version v, or
// -1 when the tail's log does not hold it.
func (t *tail) find(v uint64) int {
	i := sort.Search(len(t.log), func(i int) bool { return t.log[i].From >= v })
	if i < len(t.log) && t.log[i].From == v {
		return i
	}
	return -1
}

// publish makes the feed's current state the tail the live subscriptions
// read, at once when some pusher waits for it, else lazily: it only marks
// the tail pending, and the next reader that asks for the tail (current,
// tryCurrent) publishes it. A writer whose subscribers are all busy
// sending, or who has none, then pays for no tail per change: the
// pushers publish one per batch they send. f.mu held, so that tails are
// published in the order of the changes.
//
// pending is stored before the waiters are counted, and a pusher counts
// itself a waiter (bell.wait) before it reads pending (await): one of the
// two sees the other (the atomics are sequentially consistent), so either
// the writer publishes and rings or the pusher publishes for itself.
func (f *Feed) publish() {
	if !f.pending.Load() {
		f.pending.Store(true)
	}
	if f.bell.waiting() {
		f.publishNow()
	}
}

// publishNow publishes the tail and wakes the pushers waiting for it.
// f.mu held.
//
// The tail's log shares the feed's backing array: appendLog only appends
// past the end of every published window and drops steps by reslicing,
// never by overwriting, so a pusher reading an older tail sees it whole.
// The dropped steps stay reachable through that array until append
// reallocates it, which bounds them by the log's own size. The tail is
// stored before pending is cleared: a reader that sees pending clear
// loads that tail or a later one.
func (f *Feed) publishNow() {
	f.tail.Store(&tail{epoch: f.epoch, version: f.version, stale: f.stale, outages: f.outages, log: f.log, encMu: &f.encMu})
	f.pending.Store(false)
	f.bell.ring()
}

// current returns the tail of the feed's current state, publishing it
// first when it is pending. f.mu not held. It waits for the lock: only
// for the rare readers (a read-your-writes gate, a shared snapshot), never
// a pusher, which must not hold up the writer (tryCurrent, await).
func (f *Feed) current() *tail {
	if f.pending.Load() {
		f.mu.Lock()
		f.publishPending()
		f.unlock()
	}
	return f.tail.Load()
}

// tryCurrent is current for a pusher: when the feed is locked (the writer
// is busy) it returns the last tail published, an older state but a whole
// one, rather than wait. A pusher with nothing to send from it waits
// (await), and the tail is published for it then.
func (f *Feed) tryCurrent() *tail {
	if f.pending.Load() && f.mu.TryLock() {
		f.publishPending()
		f.unlock()
	}
	return f.tail.Load()
}

// unlock unlocks f.mu and then publishes the tail if it is pending while
// a pusher waits for it, unless someone else holds the lock by then (who
// does the same when they unlock). A pusher that waits for a pending tail
// tries to publish it itself, but never waits for the lock (await): when
// the lock is held it leaves the tail to the holder, here. Its count as a
// waiter comes before its try fails, which comes before the holder's
// unlock, so the holder sees it.
func (f *Feed) unlock() {
	f.mu.Unlock()
	for f.pending.Load() && f.bell.waiting() && f.mu.TryLock() {
		f.publishPending()
		f.mu.Unlock()
	}
}

// publishPending publishes the tail if it is pending. f.mu held.
func (f *Feed) publishPending() {
	if f.pending.Load() {
		f.publishNow()
	}
}

// bell wakes the pushers waiting for a feed's next tail: a channel closed
// and replaced on each ring, but only when some pusher waits on it, so
// that a change costs the writer no allocation while every subscriber is
// busy. The waiters are counted per channel: a pusher a ring woke stops
// counting as a waiter then, not once it runs, so the changes made before
// the woken pushers get to run (a crowd of them, on a busy machine) each
// publish no tail and ring nothing.
type bell struct {
	cur atomic.Pointer[bellCh]
}

// bellCh is one channel of a bell and the waiters registered on it.
type bellCh struct {
	ch      chan struct{}
	waiters atomic.Int32
}

// wait registers a waiter and returns the channel that the next ring
// closes. The waiter must check the tail again after wait (it may have
// changed before the registration counted) and call done with the
// channel once it stops waiting.
func (b *bell) wait() *bellCh {
	c := b.cur.Load()
	if c == nil {
		c = &bellCh{ch: make(chan struct{})}
		if !b.cur.CompareAndSwap(nil, c) {
			c = b.cur.Load()
		}
	}
	// A ring may replace c between the load and the count: it closed c
	// then, and the waiter wakes at once.
	c.waiters.Add(1)
	return c
}

// done unregisters a waiter of c.
func (c *bellCh) done() { c.waiters.Add(-1) }

// waiting reports whether some pusher waits on the current channel.
func (b *bell) waiting() bool {
	c := b.cur.Load()
	return c != nil && c.waiters.Load() > 0
}

// ring wakes every waiter of the current channel. It runs after the tail
// is stored, with the feed locked (one ring at a time): a waiter counted
// before ring reads the count gets a channel ring closes; one counted
// after that sees the new tail on its check, or counted on a channel
// already replaced, finds it closed.
func (b *bell) ring() {
	if !b.waiting() {
		return
	}
	old := b.cur.Swap(&bellCh{ch: make(chan struct{})})
	close(old.ch)
}

// State is a feed's entries, as Read shows them.
type State struct{ f *Feed }

// Len returns the number of entries.
func (s State) Len() int { return len(s.f.index) }

// Get returns the value of key.
func (s State) Get(key []byte) ([]byte, bool) { return s.f.get(key) }

// All yields every entry's key and value, in the order the keys were
// added. The slices belong to the feed: read them, never change them.
func (s State) All() iter.Seq2[[]byte, []byte] {
	return func(yield func(key, value []byte) bool) {
		for i := range s.f.slots {
			if sl := &s.f.slots[i]; sl.live && !yield(sl.key, sl.value) {
				return
			}
		}
	}
}

// get returns the value of key. f.mu held.
func (f *Feed) get(key []byte) ([]byte, bool) {
	i, ok := f.index[string(key)]
	if !ok {
		return nil, false
	}
	return f.slots[i].value, true
}

// put sets key to value, giving a new key a slot born at version. f.mu
// held.
func (f *Feed) put(key, value []byte, version uint64) (prev []byte, had bool) {
	if i, ok := f.index[string(key)]; ok {
		prev = f.slots[i].value
		f.slots[i].value = value
		f.stateBytes += len(value) - len(prev)
		return prev, true
	}
	f.insert(key, value, version)
	return nil, false
}

// insert gives key, absent, a slot born at version. f.mu held.
func (f *Feed) insert(key, value []byte, version uint64) {
	f.stateBytes += len(key) + len(value)
	// The index's key is the slot's own bytes, never changed once given
	// to the feed (see Set): a new key costs no copy of its own, which a
	// new mirror, inserting every key of its model, pays per entry.
	f.index[unsafe.String(unsafe.SliceData(key), len(key))] = len(f.slots)
	f.slots = append(f.slots, slot{key: key, value: value, born: version, live: true})
}

// remove deletes key, leaving its slot dead, and returns the slot's own
// key and its value. f.mu held.
func (f *Feed) remove(key []byte) (stored, prev []byte, had bool) {
	i, ok := f.index[string(key)]
	if !ok {
		return nil, nil, false
	}
	stored, prev = f.slots[i].key, f.slots[i].value
	f.stateBytes -= len(key) + len(prev)
	delete(f.index, string(key))
	f.slots[i] = slot{}
	f.dead++
	if f.dead > len(f.slots)/2 && len(f.slots) >= minCompact {
		f.compact()
	}
	return stored, prev, true
}

// compact drops the dead slots. The snapshots under way keep their place:
// each position moves to where the first slot at or after it went, so no
// snapshot has to start again because of a compaction. f.mu held.
func (f *Feed) compact() {
	var pos []*int
	for s := range f.subs {
		if s.snap.active && !s.snap.scanned {
			pos = append(pos, &s.snap.pos)
		}
	}
	slices.SortFunc(pos, func(a, b *int) int { return cmp.Compare(*a, *b) })
	moved := make([]int, len(f.slots))
	slots := make([]slot, 0, len(f.index)+len(f.index)/2)
	j := 0
	for i := range f.slots {
		for ; j < len(pos) && *pos[j] <= i; j++ {
			*pos[j] = len(slots)
		}
		if f.slots[i].live {
			moved[i] = len(slots)
			slots = append(slots, f.slots[i])
		}
	}
	for ; j < len(pos); j++ {
		*pos[j] = len(slots)
	}
	for k, i := range f.index {
		f.index[k] = moved[i]
	}
	f.slots, f.dead = slots, 0
}

// replace makes entries the whole state, every slot born at version. f.mu
// held; the caller makes sure no snapshot under way continues (a new
// epoch).
func (f *Feed) replace(entries map[string]Change, version uint64) {
	f.slots = make([]slot, 0, len(entries))
	f.index = make(map[string]int, len(entries))
	f.dead, f.stateBytes = 0, 0
	for k, c := range entries {
		f.stateBytes += len(c.Key) + len(c.Value)
		f.index[k] = len(f.slots)
		f.slots = append(f.slots, slot{key: c.Key, value: c.Value, born: version, live: true})
	}
}

// Publisher returns the object sent by reference as the model's feed.
func (f *Feed) Publisher() *Publisher { return f.pub }

// Owner returns the model the feed belongs to, or nil when it was given
// as a func() any and is gone.
func (f *Feed) Owner() any {
	if fn, ok := f.owner.(func() any); ok {
		return fn()
	}
	return f.owner
}

// Token returns the feed's capability, which its subscribers receive.
func (f *Feed) Token() string { return f.token }

// Epoch returns the feed's epoch.
func (f *Feed) Epoch() string {
	f.mu.Lock()
	defer f.unlock()
	return f.epoch
}

// Read calls fn with the feed's state, the feed locked: no change is applied
// (and no Sink method called) while fn runs. fn must not keep st.
func (f *Feed) Read(fn func(epoch string, version uint64, st State)) {
	f.mu.Lock()
	defer f.unlock()
	f.keepState()
	fn(f.epoch, f.version, State{f})
}

// keepState makes a lazy feed keep its state from now on: it takes the
// entries from its source, at the version the feed is at (the source
// applies each batch under mu, in Commit), every slot born at that
// version. No subscription can be under way: one starts only after
// startLogging, which ends laziness first. f.mu held.
func (f *Feed) keepState() {
	if !f.lazy {
		return
	}
	f.lazy = false
	f.slots, f.index, f.dead, f.stateBytes = nil, map[string]int{}, 0, 0
	ok := f.source.Entries(func(key, value []byte) {
		f.stateBytes += len(key) + len(value)
		f.index[unsafe.String(unsafe.SliceData(key), len(key))] = len(f.slots)
		f.slots = append(f.slots, slot{key: key, value: value, born: f.version, live: true})
	})
	if !ok && f.lost == nil {
		// The typed layer is gone (its mirror was collected): the feed
		// cannot say what it holds, so it serves nobody.
		f.lost = Lost("the mirror was collected", nil)
	}
}

// dropState makes the feed lazy again while nobody can follow it (see
// lazy). f.mu held.
func (f *Feed) dropState() {
	if f.source == nil || !f.unlogged.Load() {
		return
	}
	f.lazy = true
	f.slots, f.index, f.dead, f.stateBytes = nil, map[string]int{}, 0, 0
}

// startLogging ends the feed's time as a leaf: from now on a subscriber
// may come, so it keeps its state and logs what it applies. It returns
// why the feed serves nobody, if it does not (Feed.lost).
func (f *Feed) startLogging() error {
	f.mu.Lock()
	defer f.unlock()
	f.keepState()
	f.unlogged.Store(false)
	return f.lost
}

// EpochLocked is Epoch for a caller that holds the feed's lock (a Sink).
func (f *Feed) EpochLocked() string { return f.epoch }

// Version returns the feed's version.
func (f *Feed) Version() uint64 {
	f.mu.Lock()
	defer f.unlock()
	return f.version
}

// VersionLocked returns the version to a Sink, which runs with the feed
// locked.
func (f *Feed) VersionLocked() uint64 { return f.version }

// Subscribers returns the number of live subscriptions.
func (f *Feed) Subscribers() int {
	f.mu.Lock()
	defer f.unlock()
	return len(f.subs)
}

// endSubscriptions ends every subscription: their observers are released,
// which tells the mirrors downstream to resubscribe (to whatever serves the
// model now).
func (f *Feed) endSubscriptions() {
	f.mu.Lock()
	subs := make([]*Subscription, 0, len(f.subs))
	for s := range f.subs {
		subs = append(subs, s)
	}
	f.unlock()
	for _, s := range subs {
		s.end()
	}
}

// Set sets key to value as a new version and returns the change. The
// feed keeps value as it is: the caller must not change it afterwards.
// key is the caller's still: the feed copies it when it is new, and
// otherwise uses its own copy (the Event's Key), so that a writer may
// encode its keys into a buffer of its own and a Set of a key the feed
// holds allocates nothing for it.
func (f *Feed) Set(key, value []byte) Event {
	f.mu.Lock()
	defer f.unlock()
	return f.setLocked(key, value)
}

// Insert is Set for a key the caller holds no entry for: it reports false,
// and changes nothing, when the feed holds key already. A typed model
// whose keys are told apart otherwise than by their bytes (int 1 and uint
// 1 in a map keyed by any encode alike) refuses such a key rather than
// hold two entries where the feed, and every mirror, holds one.
func (f *Feed) Insert(key, value []byte) (Event, bool) {
	f.mu.Lock()
	defer f.unlock()
	if _, ok := f.index[string(key)]; ok {
		return Event{}, false
	}
	return f.setLocked(key, value), true
}

func (f *Feed) setLocked(key, value []byte) Event {
	f.version++
	// stored, never key, goes into the feed: key does not escape, so the
	// caller's buffer may live on its stack.
	var stored, prev []byte
	i, had := f.index[string(key)]
	if had {
		sl := &f.slots[i]
		stored, prev = sl.key, sl.value
		sl.value = value
		f.stateBytes += len(value) - len(prev)
	} else {
		stored = bytes.Clone(key)
		f.insert(stored, value, f.version)
	}
	f.appendChange(Change{Key: stored, Value: value})
	return Event{Key: stored, Value: value, Prev: prev, HadPrev: had, Version: f.version}
}

// Delete deletes key as a new version. It reports false, and changes
// nothing, when key is absent. The feed does not keep key: the change
// (the Event's Key) holds the feed's own copy.
func (f *Feed) Delete(key []byte) (Event, bool) {
	f.mu.Lock()
	defer f.unlock()
	return f.deleteLocked(key)
}

func (f *Feed) deleteLocked(key []byte) (Event, bool) {
	stored, prev, had := f.remove(key)
	if !had {
		return Event{}, false
	}
	f.version++
	f.appendChange(Change{Key: stored, Deleted: true})
	return Event{Key: stored, Deleted: true, Prev: prev, HadPrev: true, Version: f.version}, true
}

// appendLog records a step and wakes the pushers waiting (a model's
// change). The log keeps at most logMax changes, and, unless the feed was
// given a size, at most logMaxBytes of them (see DefaultLogBytes); a step
// larger than that empties it (mirrors behind it get a snapshot). While
// snapshots are under way (a subscription's own, f.snapshots, or a shared
// one, f.sharing) it keeps as many more changes (and bytes) as the
// model has entries: a snapshot
// needs the steps made since it started, and it takes about one batch per
// batch's worth of entries, so a model that changes less than a batch's
// worth per batch sent lets its snapshots complete. That extra is the
// feed's, not each subscriber's: a subscriber that stops acknowledging in
// the middle of a snapshot costs no more than the model's size once,
// however many do so.
//
// It costs the writer the same whatever the number of subscriptions: the
// step is published with the tail, lazily while no pusher waits, and the
// bell rings at most once (publish).
func (f *Feed) appendLog(s Step) {
	f.logOne(&logStep{Step: s})
}

// appendChange logs a model's change as the step to its version, which
// the caller has just set. The step and its change are taken from a slab
// of them (stepSlab), so that a writer's Set costs no allocation of its
// own for them, and the collector finds the log's steps in a few large
// objects rather than one small one per change. A slab stays reachable
// while any of its steps is in the log (or a tail some pusher still
// reads): at most maxStepSlab steps beyond the log's bound. A change of
// more than maxSlabChange bytes gets a step of its own, so that those
// steps hold at most maxStepSlab*maxSlabChange bytes of keys and values
// the log dropped: a slab of large values, kept whole by its last steps,
// held 16 times DefaultLogBytes (TestDroppedLargeValuesAreCollected).
func (f *Feed) appendChange(c Change) {
	if len(c.Key)+len(c.Value) > maxSlabChange {
		ms := &modelStep{logStep: logStep{Step: Step{From: f.version - 1, Version: f.version}}}
		ms.one[0] = c
		ms.Changes = ms.one[:]
		f.logOne(&ms.logStep)
		return
	}
	if len(f.stepSlab) == 0 {
		// Slabs grow from a few steps, so that a model changed rarely
		// (or a feed never changed) does not hold a whole one.
		f.slabSize = min(max(2*f.slabSize, 4), maxStepSlab)
		f.stepSlab = make([]modelStep, f.slabSize)
	}
	ms := &f.stepSlab[0]
	f.stepSlab = f.stepSlab[1:]
	ms.Step = Step{From: f.version - 1, Version: f.version}
	ms.one[0] = c
	ms.Changes = ms.one[:]
	f.logOne(&ms.logStep)
}

// maxStepSlab is the most steps appendChange allocates at once: about
// 14 KiB.
const maxStepSlab = 128

// maxSlabChange is the most bytes of key and value a change taken from a
// slab holds (appendChange): a slab's steps then keep at most 128 KiB the
// log dropped.
const maxSlabChange = 1 << 10

// modelStep is a model's step with room for its one change.
type modelStep struct {
	logStep
	one [1]Change
}

// logOne appends one step to the log, trims it and publishes it (see
// appendLog). f.mu held.
func (f *Feed) logOne(ls *logStep) {
	if !f.unlogged.Load() {
		ls.size = changesSize(ls.Changes)
		f.pushLog(ls)
		f.trimLog()
	}
	f.publish()
}

// logSteps records the steps of a batch a mirror applied, as appendLog
// does for one, but from their entries made for the log in one array
// (logChunk, shared by the mirrors of the batch in this process: see
// recentBatches.logged) and with one tail published for the batch: the
// mirrors downstream get the batch's steps together, as this one did. The
// log's trimming once at the end keeps the same steps as trimming after
// each one would. The log keeps the array whole while any of its steps is
// in it: at most one batch more than the log's own bound.
func (f *Feed) logSteps(chunk []logStep) {
	if len(chunk) == 0 {
		return
	}
	f.reserveLog(len(chunk))
	for i := range chunk {
		f.pushLog(&chunk[i])
	}
	f.version = chunk[len(chunk)-1].Version
	f.trimLog()
	f.publish()
}

// reserveLog makes room for n more steps in the log's backing array with
// one allocation, when there is not enough, rather than let append grow
// it by a quarter at a time, copying the whole log each time, while a
// batch of 2,048 steps goes in. The room is for two batches of n: the log
// drops steps from its front by reslicing, so the array is reallocated
// (and the log copied once) about every other batch, and the dropped steps
// it keeps reachable stay within two batches. f.mu held.
func (f *Feed) reserveLog(n int) {
	if cap(f.log)-len(f.log) >= n {
		return
	}
	grown := make([]*logStep, len(f.log), len(f.log)+2*n)
	copy(grown, f.log)
	f.log = grown
}

// logChunk returns steps made into entries of a log, with their sizes, in
// one array. The entries are immutable but for the encoding made on first
// use (tail.encodeFresh), so several feeds may log the same ones.
func logChunk(steps []Step) []logStep {
	chunk := make([]logStep, len(steps))
	for i := range steps {
		chunk[i].Step = steps[i]
		chunk[i].size = changesSize(steps[i].Changes)
	}
	return chunk
}

// changesSize returns the bytes of the keys and values of cs.
func changesSize(cs []Change) int {
	n := 0
	for _, c := range cs {
		n += len(c.Key) + len(c.Value)
	}
	return n
}

// pushLog appends one step to the log; its size is set. f.mu held.
//
// A full backing array is replaced by one of twice the log's length, not
// grown by a quarter as append grows a long slice: a log at its bound,
// which drops a step from its front for each one it appends, then copies
// itself once per log's worth of steps rather than four times. The
// dropped steps the array keeps reachable stay within the log's length
// (see publishNow).
func (f *Feed) pushLog(ls *logStep) {
	if len(f.log) == cap(f.log) {
		grown := make([]*logStep, len(f.log), max(2*len(f.log), 8))
		copy(grown, f.log)
		f.log = grown
	}
	f.log = append(f.log, ls)
	f.logLen += len(ls.Changes)
	f.logBytes += ls.cost()
}

// cost is what the step counts against the log's byte bound.
func (ls *logStep) cost() int { return ls.size + logEntryCost*len(ls.Changes) }

// trimLog drops the oldest steps while the log holds more changes, or
// more bytes, than it keeps (see appendLog). f.mu held.
func (f *Feed) trimLog() {
	keep, keepBytes := f.logMax, f.logMaxBytes
	if f.snapshots > 0 || f.sharing.Load() > 0 {
		keep += len(f.index)
		keepBytes += f.stateBytes + logEntryCost*len(f.index)
	}
	drop := 0
	for (f.logLen > keep || f.logMaxBytes > 0 && f.logBytes > keepBytes) && drop < len(f.log) {
		f.logLen -= len(f.log[drop].Changes)
		f.logBytes -= f.log[drop].cost()
		drop++
	}
	// Reslicing, never clearing the dropped elements: a pusher may still
	// read them through an older tail (see publish).
	f.log = f.log[drop:]
}

// replayFrom returns the index of the logged step that starts at version
// v, or -1 when the log does not reach back to v. f.mu held.
func (f *Feed) replayFrom(v uint64) int {
	t := tail{log: f.log}
	return t.find(v)
}

// setStaleLocked records whether the feed's source is out of reach and
// tells the subscriptions.
func (f *Feed) setStaleLocked(stale bool) bool {
	if f.stale == stale {
		return false
	}
	f.stale = stale
	if stale {
		f.outages++
	}
	f.publish()
	return true
}

// Publisher is the object a model's mirrors subscribe to: the model's feed
// as sent by reference. Subscribe is its only remote method.
//
// While some connection holds the publisher it keeps the feed's owner
// reachable: a mirror that was passed on to another peer is not collected
// under that peer, even when nobody in this process holds it any more.
type Publisher struct {
	remoteable.Referenceable
	f       *Feed
	exports atomic.Int32
	idle    atomic.Pointer[func(lost bool)]

	hmu  sync.Mutex     // orders Exported and Unexported with hold
	hold any            // the feed's owner while exports > 0
	away map[string]int // holders (by identity) whose connection died, less those that came back, and for ResumeHold after the last holder's link died
	gen  uint64         // counts the times hold was kept after a link died: only the latest timer lets it go
}

// ResumeHold is how long a publisher keeps its feed's owner once the last
// connection holding it died rather than released it: the peer may come
// back with the feed's token (docs/protocol.md §11.11), and a mirror held
// only by that peer must still be there, as a relay keeps its mirror for
// its resume window.
var ResumeHold = time.Minute

// CacheModel returns the model the feed belongs to: a feed reference that
// comes home decodes to it.
func (p *Publisher) CacheModel() any { return p.f.Owner() }

// CacheHome returns, for a mirror's feed, the mirror's subscription to its
// source when that subscription lives on c, or nil. The broker sends a
// mirror passed to the process that owns its source as that subscription,
// which arrives there as the source's own model (Subscription.CacheModel).
func (p *Publisher) CacheHome(c *broker.Conn) *broker.Ref {
	if p.f.home == nil || c == nil {
		return nil
	}
	return p.f.home(c)
}

// Subscribe starts a subscription for observer that resumes from (epoch,
// version): observer's Apply method receives the changes after version when
// epoch is the feed's and its log reaches back that far, otherwise a
// snapshot. An empty epoch asks for a snapshot. The subscription lasts
// until the caller releases it or the connection ends.
func (p *Publisher) Subscribe(ctx context.Context, observer *broker.Ref, epoch string, version uint64) (*Subscription, error) {
	if observer == nil || observer.Conn() == nil {
		return nil, errNoObserver
	}
	// A publisher served as a root is never Exported: from now on the
	// feed keeps its state and logs, as for one that was.
	if lost := p.f.startLogging(); lost != nil {
		return nil, lost
	}
	s := &Subscription{f: p.f, obs: observer, conn: observer.Conn(), epoch: epoch, version: version,
		acked: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.snap0 = snapmark.With(s.ctx)
	return s, nil
}

// OnIdle sets fn to run when no connection holds the publisher any more;
// lost tells that a holder whose connection died may still come back with
// the feed's token: more holders left that way than came back.
func (p *Publisher) OnIdle(fn func(lost bool)) { p.idle.Store(&fn) }

// Exported counts a connection that holds the publisher. The first one
// makes the publisher hold the feed's owner.
func (p *Publisher) Exported() {
	p.hmu.Lock()
	if p.exports.Add(1) == 1 {
		p.hold = p.f.Owner()
	}
	p.hmu.Unlock()
	// From now on a subscriber may come: a mirror's feed keeps its state
	// and logs what it applies (Feed.unlogged, Feed.lazy); one that
	// resumes from before gets a snapshot.
	_ = p.f.startLogging() // a feed that serves nobody refuses its subscribers (Subscribe)
}

// FeedResumed counts a holder that came back with the feed's token
// (the broker's feedResumer seam), by its identity: only a holder that left may cut the
// resume window short, not another one presenting the token many times. It
// may come back before this process noticed that its old connection died
// (a black hole): its count may go below zero until then.
func (p *Publisher) FeedResumed(who string) {
	p.hmu.Lock()
	defer p.hmu.Unlock()
	p.awayBy(who, -1)
}

// awayBy adds d to the holders away under who; hmu is held.
func (p *Publisher) awayBy(who string, d int) {
	if p.away == nil {
		p.away = map[string]int{}
	}
	p.away[who] += d
	if p.away[who] == 0 {
		delete(p.away, who)
	}
}

// someAway reports whether a holder that left by a failed connection has
// not come back; hmu is held.
func (p *Publisher) someAway() bool {
	for _, n := range p.away {
		if n > 0 {
			return true
		}
	}
	return false
}

// Unexported counts a connection that let the publisher go. When the last
// one goes the owner is no longer held (a mirror nobody else holds is then
// collected) and the idle function runs.
func (p *Publisher) Unexported() { p.unexported(false) }

// ExportLost counts a connection that held the publisher and died
// (the broker's linkLoss seam). When it was the last one, the owner stays held for
// ResumeHold.
func (p *Publisher) ExportLost(who string) {
	p.hmu.Lock()
	p.awayBy(who, 1)
	p.hmu.Unlock()
	p.unexported(true)
}

func (p *Publisher) unexported(lost bool) {
	p.hmu.Lock()
	n := p.exports.Add(-1)
	if n == 0 {
		p.gen++
		if lost && p.hold != nil {
			gen := p.gen
			time.AfterFunc(ResumeHold, func() {
				p.hmu.Lock()
				if p.gen == gen && p.exports.Load() == 0 {
					p.hold = nil
				}
				p.hmu.Unlock()
			})
		} else {
			p.hold = nil
		}
	}
	away := p.someAway()
	p.hmu.Unlock()
	if n == 0 {
		if fn := p.idle.Load(); fn != nil {
			(*fn)(away)
		}
	}
}

// Holders returns the number of connections holding the publisher.
func (p *Publisher) Holders() int { return int(p.exports.Load()) }

// FeedToken returns the feed's capability (what its subscribers receive),
// for tests. It is not remotely callable (no error result).
func (p *Publisher) FeedToken() string { return p.f.token }
