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

// seedBatches are sequences of batches an owner really sends: a snapshot
// in two parts, then steps; a replay with a step already applied; a new
// epoch.
func seedBatches() [][]Batch {
	return [][]Batch{
		{
			{Epoch: "e1", Version: 2, Snapshot: true, More: true, Entries: []Change{change("a", 1)}},
			{Epoch: "e1", Version: 2, Snapshot: true, Entries: []Change{change("b", 2)}},
			{Epoch: "e1", Version: 4, Steps: []Step{{From: 2, Version: 3, Changes: []Change{change("a", 3)}}, {From: 3, Version: 4, Changes: []Change{{Key: enc("b"), Deleted: true}}}}},
		},
		{
			{Epoch: "e1", Version: 1, Snapshot: true, Entries: []Change{change("x", 1)}},
			{Epoch: "e1", Version: 2, Stale: true, Steps: []Step{{From: 0, Version: 1}, {From: 1, Version: 2, Changes: []Change{change("y", 2)}}}},
			{Epoch: "e2", Version: 7, Snapshot: true, Entries: []Change{change("z", 9)}},
		},
	}
}

// FuzzApplyBatches decodes a peer's bytes as the batches a subscription
// pushes (the Apply call's argument) and applies them to a mirror. Nothing
// may panic; a batch is applied whole or refused; the typed state always
// equals the feed's entries; the version never goes back within an epoch.
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
			fl.f.Read(func(_ string, _ uint64, entries map[string][]byte) {
				if len(entries) != len(sink.state) {
					t.Fatalf("feed holds %d entries, the mirror %d", len(entries), len(sink.state))
				}
				for k, v := range entries {
					var key string
					var val int
					if broker.Unmarshal([]byte(k), &key) != nil || broker.Unmarshal(v, &val) != nil {
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
