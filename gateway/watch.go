package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Entry is one entry of a model, as JSON.
type Entry struct {
	Key   json.RawMessage `json:"key"`
	Value json.RawMessage `json:"value"`
}

// Event is what Watch reports about a model: first its snapshot, then each
// change, and the moments its source goes out of reach and comes back.
type Event struct {
	// Kind is "snapshot", "set", "delete", "stale", "live" or "reset". A
	// reset says the model is a new instance (its server restarted, say):
	// the sets and deletes that follow take the watcher's state to the new
	// model's, and versions count from the new epoch.
	Kind string `json:"event"`
	// Epoch identifies the model instance (snapshot and reset only).
	Epoch string `json:"epoch,omitempty"`
	// Version is the model's version after the change (or at the snapshot).
	Version uint64 `json:"version,omitempty"`
	// Key and Value are the changed entry (Value is the old value for a
	// delete).
	Key   json.RawMessage `json:"key,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
	// Entries is the whole state (snapshot only), sorted by key.
	Entries []Entry `json:"entries,omitempty"`
}

// jsonSink is a model's mirror as JSON: the typed layer of a feed follower
// that decodes entries without their Go types and queues events.
type jsonSink struct {
	g  *Gateway
	td *broker.TypeDescription // the model's description (entry types), or nil

	mu       sync.Mutex
	events   []Event
	overflow bool // the watcher fell more than maxQueued events behind
	stale    bool
	wake     chan struct{}
	started  bool
	fl       *feed.Follower
	src      *remote.Ref // released with the mirror, when the sink owns it
	lost     error       // why the mirror stopped following its model, once it has
}

// lose records that the mirror can no longer follow its model (the
// follower's OnLost): the watcher gets the events queued before, then
// the error.
func (s *jsonSink) lose(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = err
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close ends the subscription and gives back the reference to the model.
func (s *jsonSink) close() {
	s.fl.Close()
	if s.src != nil {
		s.src.Release()
	}
}

type jsonChange struct{ key, value json.RawMessage }

// sortEntries orders a snapshot's entries by the JSON text of their keys.
func sortEntries(es []Entry) {
	slices.SortFunc(es, func(a, b Entry) int { return bytes.Compare(a.Key, b.Key) })
}

// maxQueued bounds the events waiting for a slow watcher. Beyond it they
// are dropped, and the watcher gets a fresh snapshot instead.
const maxQueued = 4096

// Decode converts one change's key and value to JSON, by the model's
// description when there is one.
func (s *jsonSink) Decode(c feed.Change) (any, error) {
	keyTD, valTD := s.entryTypes()
	k, err := s.entryJSON(c.Key, keyTD)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	var v json.RawMessage
	if !c.Deleted {
		if v, err = s.entryJSON(c.Value, valTD); err != nil {
			return nil, fmt.Errorf("value: %w", err)
		}
	}
	return jsonChange{k, v}, nil
}

// entryTypes are the types of the model's keys and values, when it
// described them.
func (s *jsonSink) entryTypes() (key, value *broker.TypeDescription) {
	if s.td == nil {
		return nil, nil
	}
	return s.td.Key, s.td.Elem
}

// entryJSON converts a key or a value of the model, as it travels, to JSON.
func (s *jsonSink) entryJSON(raw []byte, td *broker.TypeDescription) (json.RawMessage, error) {
	x, err := broker.UnmarshalRaw(raw)
	if err != nil {
		return nil, err
	}
	j, err := s.g.toJSON(context.Background(), x, td)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// Commit runs with the feed locked: it only queues.
func (s *jsonSink) Commit(events []feed.Event, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.push(s.firstSnapshot(events))
		return
	}
	if reset {
		s.push(Event{Kind: "reset", Epoch: s.fl.Feed().EpochLocked(), Version: s.fl.Feed().VersionLocked()})
	}
	for _, ev := range events {
		s.push(s.changeEvent(ev))
	}
}

// firstSnapshot is the snapshot event the first commit's events make up;
// the feed is locked.
func (s *jsonSink) firstSnapshot(events []feed.Event) Event {
	snap := Event{Kind: "snapshot", Epoch: s.fl.Feed().EpochLocked(), Version: s.fl.Feed().VersionLocked()}
	for _, ev := range events {
		if !ev.Deleted {
			c := ev.Decoded.(jsonChange)
			snap.Entries = append(snap.Entries, Entry{Key: c.key, Value: c.value})
		}
	}
	sortEntries(snap.Entries)
	return snap
}

// changeEvent is the set or delete event of one change; a delete carries
// the value it removed, when the feed kept it.
func (s *jsonSink) changeEvent(ev feed.Event) Event {
	c := ev.Decoded.(jsonChange)
	if !ev.Deleted {
		return Event{Kind: "set", Version: ev.Version, Key: c.key, Value: c.value}
	}
	var old json.RawMessage
	if ev.HadPrev {
		_, valTD := s.entryTypes()
		old, _ = s.entryJSON(ev.Prev, valTD)
	}
	return Event{Kind: "delete", Version: ev.Version, Key: c.key, Value: old}
}

// Stale queues "stale" or "live"; before the first snapshot there is
// nothing to report.
func (s *jsonSink) Stale(stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return
	}
	s.stale = stale
	kind := "live"
	if stale {
		kind = "stale"
	}
	s.push(Event{Kind: kind, Version: s.fl.Feed().VersionLocked()})
}

// push queues ev; s.mu held.
func (s *jsonSink) push(ev Event) {
	if s.overflow {
		return // the next take sends a snapshot that includes ev
	}
	if len(s.events) >= maxQueued {
		s.events, s.overflow = nil, true
	} else {
		s.events = append(s.events, ev)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns the queued events, and once they are all taken, the error
// that ended the mirror if it has ended. After an overflow the events are
// a snapshot of the state now (and "stale" if it is), read with the feed
// locked so that no change falls between the snapshot and the events
// after it.
func (s *jsonSink) take() ([]Event, error) {
	s.mu.Lock()
	over := s.overflow
	if !over {
		evs, lost := s.events, s.lost
		s.events = nil
		s.mu.Unlock()
		if len(evs) > 0 {
			lost = nil // the error comes after the events before it
		}
		return evs, lost
	}
	s.mu.Unlock()
	return s.resnapshot(), nil
}

// resnapshot is the snapshot that replaces the events a watcher was too
// slow for, with "stale" after it when the mirror is stale.
func (s *jsonSink) resnapshot() []Event {
	var out []Event
	s.fl.Feed().Read(func(epoch string, version uint64, entries feed.State) {
		snap := Event{Kind: "snapshot", Epoch: epoch, Version: version}
		keyTD, valTD := s.entryTypes()
		for k, v := range entries.All() {
			kj, err1 := s.entryJSON(k, keyTD)
			vj, err2 := s.entryJSON(v, valTD)
			if err1 == nil && err2 == nil {
				snap.Entries = append(snap.Entries, Entry{Key: kj, Value: vj})
			}
		}
		sortEntries(snap.Entries)
		s.mu.Lock()
		defer s.mu.Unlock()
		out = append(out, snap)
		if s.stale {
			out = append(out, Event{Kind: "stale", Version: version})
		}
		s.events, s.overflow = nil, false
	})
	return out
}

// follow attaches a JSON mirror to the model behind src.
func (g *Gateway) follow(ctx context.Context, src remoteable.Caller, td *broker.TypeDescription) (*jsonSink, error) {
	s := &jsonSink{g: g, td: td, wake: make(chan struct{}, 1)}
	fo := feed.Options{LogSize: 1}
	if _, ok := src.(*remote.Ref); ok {
		fo.WaitLink = remote.WaitForLink
	}
	fo.OnLost = s.lose
	s.fl = feed.NewFollower(src, s, fo)
	if err := s.fl.Attach(ctx); err != nil {
		s.fl.Close()
		return nil, err
	}
	return s, nil
}

// snapshotJSON is how a model in a call's result is shown: its state now.
func (g *Gateway) snapshotJSON(ctx context.Context, src remoteable.Caller, td *broker.TypeDescription) (any, error) {
	s, err := g.follow(ctx, src, td)
	if err != nil {
		return nil, fmt.Errorf("reading the model: %w", err)
	}
	s.fl.Close()
	evs, _ := s.take() // the first commit is the snapshot: nothing is lost before it
	for _, ev := range evs {
		if ev.Kind == "snapshot" {
			typ := ""
			if td != nil {
				typ = td.Go
			}
			return map[string]any{"$cacheable": typ, "epoch": ev.Epoch, "version": ev.Version, "entries": entriesOrEmpty(ev.Entries)}, nil
		}
	}
	return nil, fmt.Errorf("reading the model: no snapshot")
}

// entriesOrEmpty is es, or an empty list rather than null.
func entriesOrEmpty(es []Entry) []Entry {
	if es == nil {
		return []Entry{}
	}
	return es
}

// Watch calls method (see Call) on a manager or handle, which must return
// a model (a Cacheable), and reports the model's snapshot and then every
// change to fn, in order, until ctx ends. A watcher more than 4096 events
// behind gets a new snapshot instead of the events it missed. When the link to the model drops
// fn gets a "stale" event, and a "live" one once the mirror has caught up;
// the changes made meanwhile arrive in between, none lost or repeated. To
// resume on its own after an outage the method must be declared
// Idempotent. fn runs on the caller's goroutine. Watch returns ctx's error,
// the error that kept it from starting, ErrClosed when the gateway closes,
// or, after the events before it, the error that ended the mirror (an
// *Error whose data.name is "tether.source-lost" when the model can no
// longer be followed: its server restarted and the method is not
// Idempotent, say).
func (g *Gateway) Watch(ctx context.Context, method string, params json.RawMessage, fn func(Event)) error {
	s, err := g.startWatch(ctx, method, params)
	if err != nil {
		return errorFor(err)
	}
	defer s.close()
	for {
		if err := g.next(ctx, s, nil, func(evs []Event) error {
			for _, ev := range evs {
				fn(ev)
			}
			return nil
		}); err != nil {
			return err
		}
	}
}

// next hands the queued events to emit, then waits for more. It returns
// emit's error, the error that ended the mirror, ctx's error, or the
// gateway's when it closes; errPing when tick fired first (nil tick:
// never).
func (g *Gateway) next(ctx context.Context, s *jsonSink, tick <-chan time.Time, emit func([]Event) error) error {
	evs, lost := s.take()
	if len(evs) > 0 {
		if err := emit(evs); err != nil {
			return err
		}
	}
	if lost != nil {
		return errorFor(lost)
	}
	select {
	case <-s.wake:
		return nil
	case <-tick:
		return errPing
	case <-ctx.Done():
		return ctx.Err()
	case <-g.done:
		return closedError()
	}
}

// startWatch calls the method and attaches a JSON mirror to the model it
// returns, within the gateway's timeout.
func (g *Gateway) startWatch(ctx context.Context, method string, params json.RawMessage) (*jsonSink, error) {
	if g.closed() {
		return nil, closedError()
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.timeout)
	defer cancel()
	inv, err := g.prepare(ctx, method, params)
	if err != nil {
		return nil, err
	}
	ref, err := g.callModel(ctx, method, inv)
	if err != nil {
		return nil, err
	}
	s, err := g.follow(ctx, ref, inv.md.Result)
	if err != nil {
		ref.Release()
		return nil, err
	}
	s.src = ref
	return s, nil
}

// callModel makes the call inv, which must return a model, and returns the
// reference to the model.
func (g *Gateway) callModel(ctx context.Context, method string, inv *invocation) (*remote.Ref, error) {
	if res := inv.md.Result; res == nil || (res.Kind != broker.KindCacheable && res.Kind != broker.KindAny) {
		return nil, newError(CodeInvalidParams, broker.InvalidArgument, "tether.not-cacheable", fmt.Sprintf("%s does not return a model", method))
	}
	var src any
	if err := inv.target.Call(ctx, inv.md.Name, &src, inv.args...); err != nil {
		return nil, err
	}
	ref, ok := src.(*remote.Ref)
	if !ok || !ref.Cacheable() {
		return nil, newError(CodeInvalidParams, broker.InvalidArgument, "tether.not-cacheable", fmt.Sprintf("%s returned %T, not a model", method, src))
	}
	return ref, nil
}
