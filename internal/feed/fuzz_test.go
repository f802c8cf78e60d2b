package feed

import (
	"context"
	"fmt"
	"testing"

	"github.com/tether-go/tether/broker"
)

// intSink is the typed layer of a Map[string, int] mirror: it decodes
// every change as the cache package does, with the codec a peer's bytes go
// through.
type intSink struct{ state map[string]int }

func (s *intSink) Decode(c Change) (any, error) {
	var k string
	if err := broker.Unmarshal(c.Key, &k); err != nil {
		return nil, err
	}
	var v int
	if !c.Deleted {
		if err := broker.Unmarshal(c.Value, &v); err != nil {
			return nil, err
		}
	}
	return [2]any{k, v}, nil
}

func (s *intSink) Commit(events []Event, reset bool) {
	for _, ev := range events {
		kv := ev.Decoded.([2]any)
		if ev.Deleted {
			delete(s.state, kv[0].(string))
		} else {
			s.state[kv[0].(string)] = kv[1].(int)
		}
	}
}

func (s *intSink) Stale(bool) {}

func enc(v any) []byte {
	b, err := broker.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func change(k string, v int) Change { return Change{Key: enc(k), Value: enc(v)} }

// testToken is a feed token of the right form.
const testToken = "0123456789abcdef0123456789abcdef"

// seedBatches are sequences of batches an owner really sends: a snapshot
// in two parts, then steps; a replay with a step already applied; a new
// epoch; a snapshot whose entries were read while the model changed, ending
// with the steps made meanwhile; a snapshot that starts again.
func seedBatches() [][]Batch {
	del := func(k string) Change { return Change{Key: enc(k), Deleted: true} }
	return [][]Batch{
		{
			{Epoch: "e1", Version: 2, Snapshot: true, More: true, First: true, Token: testToken, Entries: []Change{change("a", 1)}},
			{Epoch: "e1", Version: 2, Snapshot: true, Entries: []Change{change("b", 2)}},
			{Epoch: "e1", Version: 4, Steps: []Step{{From: 2, Version: 3, Changes: []Change{change("a", 3)}}, {From: 3, Version: 4, Changes: []Change{del("b")}}}},
		},
		{
			{Epoch: "e1", Version: 1, Snapshot: true, First: true, Token: testToken, Entries: []Change{change("x", 1)}},
			{Epoch: "e1", Version: 2, Stale: true, Steps: []Step{{From: 0, Version: 1}, {From: 1, Version: 2, Changes: []Change{change("y", 2)}}}},
			{Epoch: "e2", Version: 7, Snapshot: true, First: true, Entries: []Change{change("z", 9)}},
		},
		{
			{Epoch: "e1", Version: 3, Snapshot: true, More: true, First: true, Token: testToken, Entries: []Change{change("a", 1), change("b", 2)}},
			{Epoch: "e1", Version: 5, Snapshot: true, More: true, Entries: []Change{change("c", 7)},
				Steps: []Step{{From: 3, Version: 4, Changes: []Change{change("c", 7)}}, {From: 4, Version: 5, Changes: []Change{del("a")}}}},
			{Epoch: "e1", Version: 6, Snapshot: true, Entries: []Change{},
				Steps: []Step{{From: 5, Version: 6, Changes: []Change{change("a", 4)}}}},
			{Epoch: "e1", Version: 7, Steps: []Step{{From: 6, Version: 7, Changes: []Change{del("b")}}}},
		},
		{
			{Epoch: "e1", Version: 3, Snapshot: true, More: true, First: true, Token: testToken, Entries: []Change{change("a", 1)}},
			{Epoch: "e1", Version: 9, Snapshot: true, More: true, First: true, Entries: []Change{change("a", 2)}},
			{Epoch: "e1", Version: 9, Snapshot: true, Entries: []Change{change("b", 3)}},
			{Epoch: "e1", Version: 9, Stale: true},
		},
	}
}

// FuzzApplyBatches decodes a peer's bytes as the batches a subscription
// pushes (the Apply call's argument) and applies them to a mirror. Nothing
// may panic; a batch is applied whole or refused; the typed state always
// equals the feed's entries; the version never goes back within an epoch;
// the feed's slots and index agree.
func FuzzApplyBatches(f *testing.F) {
	for _, bs := range seedBatches() {
		f.Add(enc(bs))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var batches []Batch
		if broker.Unmarshal(data, &batches) != nil {
			return
		}
		sink := &intSink{state: map[string]int{}}
		fl := &Follower{f: New(8, nil), sink: sink}
		fl.f.epoch = ""
		o := &observer{fl: fl, first: make(chan struct{}), failed: make(chan struct{})}
		for _, b := range batches {
			epoch, version := fl.f.Epoch(), fl.f.Version()
			err := o.Apply(context.Background(), b)
			if err != nil {
				if o.why() == nil {
					t.Fatalf("refused without failing the subscription: %v", err)
				}
				break // the follower would resubscribe
			}
			if fl.f.Epoch() == epoch && fl.f.Version() < version {
				t.Fatalf("version went back from %d to %d", version, fl.f.Version())
			}
			if err := fl.f.checkSlots(); err != nil {
				t.Fatal(err)
			}
			fl.f.Read(func(_ string, _ uint64, st State) {
				if st.Len() != len(sink.state) {
					t.Fatalf("feed holds %d entries, the mirror %d", st.Len(), len(sink.state))
				}
				for k, v := range st.All() {
					var key string
					var val int
					if broker.Unmarshal(k, &key) != nil || broker.Unmarshal(v, &val) != nil {
						t.Fatalf("an entry that does not decode was applied: %x", k)
					}
					if got, ok := sink.state[key]; !ok || got != val {
						t.Fatalf("entry %q: feed %d, mirror %v", key, val, fmt.Sprint(got, ok))
					}
				}
			})
		}
	})
}

// checkSlots reports where a feed's slot array and index disagree.
func (f *Feed) checkSlots() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	live, dead := 0, 0
	for i, sl := range f.slots {
		if !sl.live {
			dead++
			continue
		}
		live++
		if j, ok := f.index[string(sl.key)]; !ok || j != i {
			return fmt.Errorf("slot %d (key %x) is indexed at %d, %v", i, sl.key, j, ok)
		}
		if sl.born > f.version {
			return fmt.Errorf("slot %d born at %d, after the feed's version %d", i, sl.born, f.version)
		}
	}
	if live != len(f.index) || dead != f.dead {
		return fmt.Errorf("%d live and %d dead slots; index holds %d, dead count %d", live, dead, len(f.index), f.dead)
	}
	return nil
}
