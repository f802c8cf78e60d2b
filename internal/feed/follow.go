package feed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/remoteable"
)

// Sink is the typed layer above a mirror's feed. Both methods are called
// with the feed locked, in order, from one goroutine at a time.
type Sink interface {
	// Decode checks and decodes one change (only its key when Deleted).
	// An error refuses the whole batch.
	Decode(c Change) (any, error)
	// Commit reports the changes just applied to the feed. reset is true
	// when the epoch changed. events is lent: the feed reuses its array
	// once Commit returns, so Commit must copy what it keeps.
	Commit(events []Event, reset bool)
	// Stale reports a change of the mirror's staleness.
	Stale(stale bool)
}

// StateSource is a Sink that holds the bytes of every entry it was
// given: the feed of a mirror nobody follows then keeps no copy of its
// own, and takes it from the sink when one is needed (Feed.keepState).
type StateSource interface {
	Sink
	// Entries calls yield for every entry, with the key and value bytes
	// the feed gave the sink (in Commit's events), which nobody changes.
	// It is called with the feed locked, so the entries are those of
	// the feed's version. It reports false when it no longer knows them
	// (its mirror is gone).
	Entries(yield func(key, value []byte)) bool
}

// Options configure a Follower.
type Options struct {
	// LogSize is the mirror's own log, for the mirrors downstream of it.
	LogSize int
	// WaitLink returns the context resubscription calls are made with; a
	// reconnecting source uses it to wait for its link rather than fail
	// fast while it is down.
	WaitLink func(context.Context) context.Context
	// Owner is the model the mirror's feed belongs to (the typed mirror),
	// or a func() any returning it, so that neither the feed nor the
	// follower keeps it reachable (see New).
	Owner any
	// OnLost is called once, from the follower's goroutine, when the
	// mirror can no longer follow its source (an error matching
	// ErrSourceLost). The follower has stopped by then; OnLost may Close
	// it.
	OnLost func(err error)
	// OnEnd is called once, from the follower's goroutine, when it stops
	// following for any reason (Close, a closed client, the source lost),
	// after OnLost.
	OnEnd func()
}

// ErrSourceLost reports a mirror that can no longer follow its source: the
// model's owner no longer has the feed the mirror followed (it restarted,
// or the model is gone) and the call that returned the model is not
// declared safe to repeat, or the mirror's connection ended and nothing
// can bring it back. The mirror keeps its last state, stays stale, and
// does not try again. Errors that match it from this process match
// broker.ErrDeadReference too.
var ErrSourceLost = broker.NewError(broker.FailedPrecondition, errors.New("tether: mirror lost its source"))

func init() { remoteable.RegisterError("tether.source-lost", ErrSourceLost) }

// lostError is ErrSourceLost with what happened, matching
// broker.ErrDeadReference too.
type lostError struct {
	msg   string
	cause error
}

func (e *lostError) Error() string { return e.msg }

func (e *lostError) Is(target error) bool { return target == broker.ErrDeadReference }

// Unwrap returns ErrSourceLost first, so that the error crosses the wire
// under its name (a relay's mirror tells the mirrors downstream), then the
// cause.
func (e *lostError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrSourceLost}
	}
	return []error{ErrSourceLost, e.cause}
}

// Lost returns an error matching ErrSourceLost and broker.ErrDeadReference
// that says why (detail: what happened and what to do) and unwraps to
// cause, whose text is not repeated.
func Lost(detail string, cause error) error {
	return &lostError{msg: ErrSourceLost.Error() + ": " + detail, cause: cause}
}

// ErrGap is the reason a batch is refused when it does not continue the
// mirror's state: applying it would skip changes.
var ErrGap = errors.New("tether: cache batch does not continue the mirror's version")

// Follower keeps a mirror: a feed whose state comes from another feed, the
// source, through a subscription, and which resubscribes from its (epoch,
// version) whenever the subscription is lost.
type Follower struct {
	f    *Feed
	src  remoteable.Caller
	sink Sink
	opts Options

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	obs      *observer
	sub      *broker.Ref
	ownStale bool
	upStale  bool
	err      error
	lost     error // set once the mirror can no longer follow its source
	started  bool
	looping  bool // the resubscribing goroutine runs: Close waits for it
	closed   bool
}

// NewFollower returns a mirror of the feed src refers to. It does nothing
// until Attach.
func NewFollower(src remoteable.Caller, sink Sink, opts Options) *Follower {
	fl := &Follower{f: New(opts.LogSize, opts.Owner), src: src, sink: sink, opts: opts, done: make(chan struct{})}
	fl.f.epoch = "" // a mirror has no state of its own until the first snapshot
	fl.f.unlogged.Store(true)
	if src, ok := sink.(StateSource); ok {
		fl.f.source, fl.f.lazy = src, true
	}
	fl.f.publish() // no subscriber yet: only for the epoch its first ones will read
	fl.f.home = fl.subscriptionOn
	fl.ctx, fl.cancel = context.WithCancel(context.Background())
	return fl
}

// Feed returns the mirror's own feed, which serves the mirrors downstream.
func (fl *Follower) Feed() *Feed { return fl.f }

// Attach subscribes and waits until the first batch is applied; then it
// starts the goroutine that resubscribes after outages.
func (fl *Follower) Attach(ctx context.Context) error {
	fl.mu.Lock()
	if fl.started || fl.closed {
		fl.mu.Unlock()
		return errors.New("tether: mirror already attached")
	}
	fl.started = true
	fl.mu.Unlock()
	if err := fl.subscribe(ctx); err != nil {
		fl.Close()
		return err
	}
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed {
		return broker.ErrClosed
	}
	fl.looping = true
	go fl.loop()
	return nil
}

// subscriptionOn returns the current subscription if it lives on c, or
// nil: a mirror sent over c goes home as it (the broker checks that it was
// not released meanwhile, and sends the mirror as a Cacheable if it was).
func (fl *Follower) subscriptionOn(c *broker.Conn) *broker.Ref {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.closed || fl.sub == nil || fl.sub.Conn() != c {
		return nil
	}
	return fl.sub
}

// Err returns why the mirror last failed to (re)subscribe, or nil. Once
// the mirror lost its source it returns that error (ErrSourceLost) for
// good.
func (fl *Follower) Err() error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.lost != nil {
		return fl.lost
	}
	return fl.err
}

// Close ends the subscription and stops the follower. The mirror keeps
// its last state and stays stale.
func (fl *Follower) Close() {
	fl.mu.Lock()
	if fl.closed {
		fl.mu.Unlock()
		return
	}
	fl.closed = true
	looping := fl.looping
	sub, obs := fl.sub, fl.obs
	fl.sub, fl.obs = nil, nil
	fl.mu.Unlock()
	fl.cancel()
	if obs != nil {
		obs.detach()
	}
	if sub != nil {
		sub.Release()
	}
	if r, ok := fl.src.(interface{ Release() }); ok {
		r.Release()
	}
	if looping {
		<-fl.done
	}
	captable.Remove(fl.f.token) // nobody resumes a closed mirror's feed
	fl.setStale(true, true)
	// Mirrors downstream of this one must not wait for changes that will
	// not come: their subscriptions end, and their resubscriptions fail
	// with ErrSourceLost (a closed mirror's feed stays stale for good).
	fl.f.mu.Lock()
	if fl.f.lost == nil {
		fl.f.lost = Lost("the mirror it followed was closed", nil)
	}
	fl.f.unlock()
	fl.f.endSubscriptions()
}

// subscribe makes one subscription and waits for its first batch.
func (fl *Follower) subscribe(ctx context.Context) error {
	obs := &observer{fl: fl, first: make(chan struct{}), failed: make(chan struct{})}
	fl.mu.Lock()
	if fl.closed {
		fl.mu.Unlock()
		return broker.ErrClosed
	}
	old := fl.obs
	fl.obs = obs
	fl.mu.Unlock()
	if old != nil {
		old.detach()
	}
	epoch, version := fl.f.Epoch(), fl.f.Version()
	var sub *broker.Ref
	if err := fl.src.Call(ctx, "Subscribe", &sub, obs, epoch, version); err != nil {
		obs.detach()
		return err
	}
	if sub == nil {
		obs.detach()
		return fmt.Errorf("%w: Subscribe returned no subscription", broker.ErrBadReply)
	}
	fl.mu.Lock()
	oldSub := fl.sub
	fl.sub = sub
	closed := fl.closed
	fl.mu.Unlock()
	if oldSub != nil {
		oldSub.Release()
	}
	if closed {
		sub.Release()
		return broker.ErrClosed
	}
	select {
	case <-obs.first:
		return nil
	case <-obs.failed:
		return obs.why()
	case <-sub.Conn().Closed():
		return fmt.Errorf("%w: the link ended before the first batch", broker.ErrConnectionLost)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop waits for the subscription to be lost and makes a new one, until
// Close. A source whose connection ended for good ends the loop.
func (fl *Follower) loop() {
	var lost error
	defer func() {
		close(fl.done)
		if lost != nil && fl.opts.OnLost != nil {
			fl.opts.OnLost(lost) // after done: it may Close the follower
		}
		if fl.opts.OnEnd != nil {
			fl.opts.OnEnd()
		}
	}()
	wait := minRetry
	for {
		began := time.Now()
		if !fl.awaitLoss() {
			return
		}
		fl.setStale(true, true)
		// A subscription that failed soon after it began (a batch the
		// owner cannot send, say) is not retried at once: the backoff
		// carries over until one lasts.
		if time.Since(began) > time.Second {
			wait = minRetry
		} else if !fl.sleep(wait) {
			return
		} else {
			wait = min(2*wait, maxRetry)
		}
		var ok bool
		if lost, ok = fl.resubscribe(&wait); !ok {
			return
		}
	}
}

// awaitLoss waits until the current subscription is lost (its link ended
// or its observer failed), reporting false when there is none or the
// follower closed.
func (fl *Follower) awaitLoss() bool {
	fl.mu.Lock()
	sub, obs := fl.sub, fl.obs
	fl.mu.Unlock()
	if sub == nil || obs == nil {
		return false
	}
	select {
	case <-fl.ctx.Done():
		return false
	case <-sub.Conn().Closed():
	case <-obs.failed:
		// An observer dropped because its link ended (the broker drops a
		// dead connection's exports, telling each, after Closed fired)
		// is a link loss, not a failure to resume: the select may pick
		// either when both are ready, and Err must not report it.
		if err := obs.why(); err != nil && !(errors.Is(err, errDropped) && sub.Conn().Err() != nil) {
			fl.setErr(err)
		}
	}
	return true
}

// resubscribe subscribes again until it succeeds, doubling *wait between
// attempts. It reports false when the follower should stop: closed, or the
// source lost for good, which it returns (after lose).
func (fl *Follower) resubscribe(wait *time.Duration) (lost error, ok bool) {
	for {
		err := fl.subscribe(fl.linkCtx())
		if err == nil {
			fl.setStale(false, true)
			return nil, true
		}
		if fl.ctx.Err() != nil {
			return nil, false
		}
		fl.setErr(err)
		if gone := fl.lostBy(err); gone != nil {
			return fl.lose(gone), false
		}
		if errors.Is(err, broker.ErrClosed) || !fl.sleep(*wait) {
			return nil, false
		}
		*wait = min(2**wait, maxRetry)
	}
}

// linkCtx is the context a resubscription runs in: the follower's, made to
// wait for the source's link when the options ask so (Options.WaitLink).
func (fl *Follower) linkCtx() context.Context {
	if fl.opts.WaitLink != nil {
		return fl.opts.WaitLink(fl.ctx)
	}
	return fl.ctx
}

// setErr records why the mirror last failed to (re)subscribe (Err).
func (fl *Follower) setErr(err error) {
	fl.mu.Lock()
	fl.err = err
	fl.mu.Unlock()
}

// lostBy returns the error to lose the source with when a resubscription's
// err means it can never come back, or nil when a later one may succeed.
func (fl *Follower) lostBy(err error) error {
	if r, ok := fl.src.(*broker.Ref); ok && (r.Conn() == nil || r.Conn().Err() != nil) {
		// A bare reference whose connection ended: nothing can bring it
		// back.
		return Lost("its connection ended and it was received through a *broker.Ref, "+
			"which does not reconnect; obtain the model through a remote.Client's references to have it resume", err)
	}
	if !errors.Is(err, ErrSourceLost) {
		return nil
	}
	var le *lostError
	if !errors.As(err, &le) {
		// The far side's error: the mirror this one followed (a relay's)
		// lost its own source.
		return Lost("the mirror it followed, on a relay, lost its own source", err)
	}
	return err
}

// lose records that the mirror can no longer follow its source, loudly:
// Err returns err from now on, the mirror stays stale, the mirrors
// downstream of it are told (their resubscriptions fail with
// ErrSourceLost), and a warning goes to the logger of the connection the
// mirror last followed its source on (broker.WithLogger), or slog's
// default logger. It returns err.
func (fl *Follower) lose(err error) error {
	fl.mu.Lock()
	fl.lost = err
	var conn *broker.Conn
	if fl.sub != nil {
		conn = fl.sub.Conn()
	}
	fl.mu.Unlock()
	fl.setStale(true, true)
	fl.f.mu.Lock()
	fl.f.lost = err
	fl.f.unlock()
	captable.Remove(fl.f.token)
	fl.f.endSubscriptions()
	logger := captable.LoggerOf(conn)
	if logger == nil {
		logger = slog.Default()
	}
	logger.Warn("tether: a mirror stopped following its model", "source", fmt.Sprint(fl.src), "err", err)
	return err
}

// Resubscription backoff.
const (
	minRetry = 20 * time.Millisecond
	maxRetry = 2 * time.Second
)

// sleep waits d, reporting false if the follower closed meanwhile.
func (fl *Follower) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-fl.ctx.Done():
		return false
	}
}

// setStale records the mirror's own link state (own) or what its source
// says about its own source (!own) and passes the combination on.
func (fl *Follower) setStale(stale, own bool) {
	fl.mu.Lock()
	if own {
		fl.ownStale = stale
	} else {
		fl.upStale = stale
	}
	s := fl.ownStale || fl.upStale
	fl.mu.Unlock()
	fl.f.mu.Lock()
	if fl.f.setStaleLocked(s) && fl.sink != nil {
		fl.sink.Stale(s)
	}
	fl.f.unlock()
}

// observer receives one subscription's batches. It is sent to the source
// by reference; a new subscription gets a new observer, and an observer
// detached from its follower refuses further batches.
type observer struct {
	remoteable.Referenceable
	fl *Follower

	mu       sync.Mutex
	detached bool
	pending  *pending // a snapshot arriving in parts
	seen     bool     // a batch came: the token came with it
	first    chan struct{}
	gotFirst bool
	failed   chan struct{}
	err      error
}

// Unexported tells the observer that the model's owner let it go: the
// subscription is over (a push failed on the owner's side, say), so the
// follower resubscribes. Exported needs nothing.
func (o *observer) Unexported() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.fail(errDropped)
}

// Exported is part of remoteable.ExportObserver.
func (o *observer) Exported() {}

// CacheObserver marks o for the broker's counts (its cacheObserver seam:
// ConnStats.Mirrors).
func (o *observer) CacheObserver() {}

// errDropped is why a mirror resubscribes when the owner ended its
// subscription without the link failing.
var errDropped = errors.New("tether: the model's owner ended the subscription")

func (o *observer) detach() {
	o.mu.Lock()
	o.detached = true
	o.pending = nil
	o.mu.Unlock()
}

func (o *observer) why() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// fail refuses the subscription: the follower resubscribes.
func (o *observer) fail(err error) error {
	if !o.detached && o.err == nil {
		o.err = err
		close(o.failed)
	}
	return err
}

// pending is a snapshot being received (docs/protocol.md §11.7): the
// entries its batches carried, then the steps after them applied to those.
type pending struct {
	epoch   string
	version uint64            // how far the steps applied reach
	entries map[string]Change // by key
	stepped bool              // steps have come: no entry may follow
}

// Apply applies one batch. Batches of one subscription arrive one at a
// time, in order.
func (o *observer) Apply(ctx context.Context, b Batch) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.detached {
		return errors.New("tether: the mirror ended this subscription")
	}
	if o.err != nil {
		return o.err
	}
	fl := o.fl
	if err := o.checkToken(b.Token); err != nil {
		return o.fail(err)
	}
	if b.Snapshot {
		p, err := o.collect(&b)
		if err != nil {
			o.pending = nil
			return o.fail(err)
		}
		if b.More {
			return nil
		}
		o.pending = nil
		if err := fl.f.resync(p.epoch, p.version, p.entries, fl.sink); err != nil {
			return o.fail(err)
		}
	} else if o.pending != nil {
		o.pending = nil
		return o.fail(errors.New("tether: a batch of steps in the middle of a snapshot"))
	} else if b.First {
		return o.fail(errors.New("tether: a batch of steps marked as a snapshot's first"))
	} else if err := fl.f.applySteps(b.Epoch, b.Steps, fl.sink); err != nil {
		return o.fail(err)
	}
	fl.setStale(b.Stale, false)
	if !o.gotFirst {
		o.gotFirst = true
		close(o.first)
	}
	return nil
}

// checkToken checks a batch's Token field: the feed's token on the first
// batch of the subscription, and nothing on the others. The follower's
// source learns the token, to present it after an outage (§11.11). o.mu
// held.
func (o *observer) checkToken(tok string) error {
	if o.seen {
		if tok != "" {
			return errors.New("tether: a feed token on a batch other than a subscription's first")
		}
		return nil
	}
	if !captable.Valid(tok) {
		return fmt.Errorf("tether: the first batch of a subscription must carry the feed's token, %d lowercase hexadecimal digits", captable.TokenLen)
	}
	o.seen = true
	if o.fl != nil && o.fl.src != nil {
		captable.TellSource(o.fl.src, tok)
	}
	return nil
}

// collect adds a snapshot batch to the snapshot being received, starting a
// new one at a batch marked First. o.mu held.
func (o *observer) collect(b *Batch) (*pending, error) {
	p, err := o.snapshotFor(b)
	if err != nil {
		return nil, err
	}
	if err := p.addEntries(b.Entries); err != nil {
		return nil, err
	}
	if err := p.addSteps(b.Steps); err != nil {
		return nil, err
	}
	if len(p.entries) > maxSnapshotEntries {
		return nil, fmt.Errorf("tether: snapshot of more than %d entries", maxSnapshotEntries)
	}
	if b.Version != p.version {
		return nil, fmt.Errorf("tether: snapshot batch at version %d, its steps reach %d", b.Version, p.version)
	}
	return p, nil
}

// snapshotFor returns the snapshot a batch belongs to: a new one for a
// batch marked First, else the one under way. o.mu held.
func (o *observer) snapshotFor(b *Batch) (*pending, error) {
	if !b.First {
		if o.pending == nil || o.pending.epoch != b.Epoch {
			return nil, errors.New("tether: a snapshot batch that continues no snapshot")
		}
		return o.pending, nil
	}
	start := b.Version
	if len(b.Steps) > 0 {
		start = b.Steps[0].From
	}
	// Sized for the first batch's entries: a shared snapshot of a model of
	// up to a batch's worth comes in one batch, and a map that grows
	// entry by entry costs a mirror more than the rest of the snapshot.
	o.pending = &pending{epoch: b.Epoch, version: start, entries: make(map[string]Change, len(b.Entries))}
	return o.pending, nil
}

// addEntries adds a batch's entries, which must come before the
// snapshot's steps.
func (p *pending) addEntries(entries []Change) error {
	if len(entries) > 0 && p.stepped {
		return errors.New("tether: snapshot entries after its steps")
	}
	for _, c := range entries {
		if err := p.checkEntry(c); err != nil {
			return err
		}
		p.entries[string(c.Key)] = c
	}
	return nil
}

// checkEntry refuses an entry a snapshot cannot hold: a deletion, a key it
// already has, or a key or value too deep to send on.
func (p *pending) checkEntry(c Change) error {
	if c.Deleted {
		return errors.New("tether: a snapshot entry cannot be a deletion")
	}
	if _, dup := p.entries[string(c.Key)]; dup {
		return errors.New("tether: snapshot repeats a key")
	}
	// An entry arrives here two levels higher than in a step: one deeper
	// than EntryDepth would pass this connection's limits and then break
	// every step this mirror sends on.
	if err := CheckEntry(c.Key); err != nil {
		return fmt.Errorf("%w (in a snapshot entry from the model's owner)", err)
	}
	if err := CheckEntry(c.Value); err != nil {
		return fmt.Errorf("%w (in a snapshot entry from the model's owner)", err)
	}
	return nil
}

// addSteps applies a batch's steps to the entries received, each
// continuing from the version the last one reached.
func (p *pending) addSteps(steps []Step) error {
	for _, st := range steps {
		if st.From != p.version || st.Version < st.From {
			return fmt.Errorf("%w: snapshot step %d→%d, snapshot at %d", ErrGap, st.From, st.Version, p.version)
		}
		for _, c := range st.Changes {
			if c.Deleted {
				delete(p.entries, string(c.Key))
			} else {
				p.entries[string(c.Key)] = c
			}
		}
		p.version, p.stepped = st.Version, true
	}
	return nil
}

// maxSnapshotEntries bounds what a mirror accepts as one snapshot.
const maxSnapshotEntries = 1 << 24

// resync replaces the state with a snapshot, logging and reporting the
// difference from the previous state as changes.
func (f *Feed) resync(epoch string, version uint64, entries map[string]Change, sink Sink) error {
	f.mu.Lock()
	defer f.unlock()
	if epoch == f.epoch && version < f.version {
		return fmt.Errorf("%w: snapshot at %d, mirror at %d", ErrGap, version, f.version)
	}
	// The difference is from the state: a lazy feed takes it from its
	// sink for the time of the resync.
	f.keepState()
	defer f.dropState()
	diff := f.diffTo(entries)
	decoded, err := decodeAll(diff, sink)
	if err != nil {
		return err
	}
	reset := epoch != f.epoch
	var events []Event
	if reset {
		events = f.resetTo(epoch, version, entries, diff, decoded)
	} else {
		events = f.applyDiff(version, diff, decoded)
	}
	if sink != nil {
		sink.Commit(events, reset)
	}
	return nil
}

// diffTo returns the changes that turn the state into entries, sorted by
// key. f.mu held.
func (f *Feed) diffTo(entries map[string]Change) []Change {
	var diff []Change
	for _, c := range entries {
		if old, ok := f.get(c.Key); !ok || string(old) != string(c.Value) {
			diff = append(diff, Change{Key: c.Key, Value: c.Value})
		}
	}
	for i := range f.slots {
		if sl := &f.slots[i]; sl.live {
			if _, ok := entries[string(sl.key)]; !ok {
				diff = append(diff, Change{Key: sl.key, Deleted: true})
			}
		}
	}
	// The order of a snapshot's entries means nothing; sorting the
	// differences makes what the typed layer reports repeatable.
	slices.SortFunc(diff, func(a, b Change) int { return bytes.Compare(a.Key, b.Key) })
	return diff
}

// resetTo moves the feed to a snapshot of another epoch: the state becomes
// entries at version and the log starts afresh. It returns the events of
// diff, the changes from the old state. f.mu held.
func (f *Feed) resetTo(epoch string, version uint64, entries map[string]Change, diff []Change, decoded []any) []Event {
	events := make([]Event, len(diff))
	for i, c := range diff {
		prev, had := f.get(c.Key)
		events[i] = Event{Key: c.Key, Value: c.Value, Deleted: c.Deleted, Prev: prev, HadPrev: had, Version: version}
		events[i].Decoded = decodedAt(decoded, i)
	}
	// Every snapshot under way downstream was of the old epoch: they
	// start again, so the slots can be laid out afresh.
	f.replace(entries, version)
	f.epoch, f.log, f.logLen, f.logBytes = epoch, nil, 0, 0
	f.version = version
	f.publish() // subscribers of the old epoch need a snapshot
	return events
}

// applyDiff applies a snapshot's difference from the state, of the same
// epoch, as one logged step to version, and returns its events. f.mu held.
func (f *Feed) applyDiff(version uint64, diff []Change, decoded []any) []Event {
	events := make([]Event, len(diff))
	for i, c := range diff {
		events[i] = f.applyChange(c, version)
		events[i].Decoded = decodedAt(decoded, i)
	}
	if version > f.version || len(diff) > 0 {
		f.appendStep(Step{From: f.version, Version: version, Changes: diff})
	}
	return events
}

// applyChange applies one change at version and returns its event, without
// the decoded value. f.mu held.
func (f *Feed) applyChange(c Change, version uint64) Event {
	var prev []byte
	var had bool
	if c.Deleted {
		_, prev, had = f.remove(c.Key)
	} else {
		prev, had = f.put(c.Key, c.Value, version)
	}
	return Event{Key: c.Key, Value: c.Value, Deleted: c.Deleted, Prev: prev, HadPrev: had, Version: version}
}

// decodedAt returns the i'th decoded value, or nil when nothing was
// decoded (no sink).
func decodedAt(decoded []any, i int) any {
	if decoded == nil {
		return nil
	}
	return decoded[i]
}

// appendStep logs a step that may span several versions (a resync's
// difference) and moves to its version.
func (f *Feed) appendStep(s Step) {
	f.version = s.Version
	f.appendLog(s)
}

// applySteps applies consecutive steps, skipping those already applied
// (a prefix: the batch may overlap what a resumed mirror holds) and
// refusing any that would leave a gap. It logs and publishes the steps
// applied once for the batch (logSteps), and reports them to the sink in
// one Commit, also when a bad step stops it part way.
func (f *Feed) applySteps(epoch string, steps []Step, sink Sink) error {
	f.mu.Lock()
	defer f.unlock()
	if epoch != f.epoch {
		return fmt.Errorf("%w: batch of epoch %s, mirror of %s", ErrGap, epoch, f.epoch)
	}
	for len(steps) > 0 && steps[0].Version <= f.version {
		steps = steps[1:] // already applied
	}
	events := takeEvents(countChanges(steps))
	done, err := f.applyEach(steps, sink, &events)
	switch {
	case done == 0:
	case f.unlogged.Load():
		f.publish() // nobody follows this mirror yet: nothing to log
	default:
		f.logSteps(recent.logged(steps)[:done])
	}
	if sink != nil && done > 0 {
		sink.Commit(events, false)
	}
	giveEvents(events)
	return err
}

// eventBufs holds the arrays applySteps builds a batch's events in: the
// Sink's Commit only reads them before it returns, so the array goes back
// for the next batch of any mirror instead of being allocated (and
// zeroed, then collected) per batch and mirror. A pool rather than a
// field of the feed: a thousand idle mirrors hold none.
var eventBufs sync.Pool

// takeEvents returns an empty events array with room for n.
func takeEvents(n int) []Event {
	if p, ok := eventBufs.Get().(*[]Event); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]Event, 0, n)
}

// giveEvents clears events, which may hold the last references to keys
// and values the mirror let go of, and returns the array to the pool
// unless it grew past a batch's worth of changes (a large snapshot's).
func giveEvents(events []Event) {
	if cap(events) > maxBatchChanges {
		return
	}
	clear(events)
	events = events[:0]
	eventBufs.Put(&events)
}

// applyEach applies the steps in order to the state, appending their
// events, until one does not continue the state's version or does not
// decode. It returns how many it applied. The version moves with each
// step; logSteps logs them. f.mu held.
func (f *Feed) applyEach(steps []Step, sink Sink, events *[]Event) (int, error) {
	v := f.version
	var decoded []any // reused from step to step
	for i, st := range steps {
		if st.From != v || st.Version < st.From {
			f.version = v
			return i, fmt.Errorf("%w: step %d→%d, mirror at %d", ErrGap, st.From, st.Version, v)
		}
		var err error
		if decoded, err = decodeInto(decoded[:0], st.Changes, sink); err != nil {
			f.version = v
			return i, err
		}
		for j, c := range st.Changes {
			var ev Event
			if f.lazy {
				// The sink holds the state (StateSource): the event
				// carries no previous value, which it does not read.
				ev = Event{Key: c.Key, Value: c.Value, Deleted: c.Deleted, Version: st.Version}
			} else {
				ev = f.applyChange(c, st.Version)
			}
			ev.Decoded = decodedAt(decoded, j)
			*events = append(*events, ev)
		}
		v = st.Version
	}
	f.version = v
	return len(steps), nil
}

// countChanges returns the number of changes in steps.
func countChanges(steps []Step) int {
	n := 0
	for i := range steps {
		n += len(steps[i].Changes)
	}
	return n
}

// decodeAll decodes the changes' values through the sink, or returns nil
// without one.
func decodeAll(cs []Change, sink Sink) ([]any, error) {
	if sink == nil {
		return nil, nil
	}
	return decodeInto(make([]any, 0, len(cs)), cs, sink)
}

// decodeInto is decodeAll appending to out, so that a caller decoding
// step after step reuses one slice.
func decodeInto(out []any, cs []Change, sink Sink) ([]any, error) {
	if sink == nil {
		return nil, nil
	}
	for _, c := range cs {
		x, err := sink.Decode(c)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}
