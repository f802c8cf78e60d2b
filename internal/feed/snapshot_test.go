package feed

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/tether-go/tether/broker"
)

// TestSeedBatchesApply: every seed of FuzzApplyBatches is accepted whole,
// so that the fuzzer starts from batches that get past the checks.
func TestSeedBatchesApply(t *testing.T) {
	for i, bs := range seedBatches() {
		sink := &intSink{state: map[string]int{}}
		fl := &Follower{f: New(8, nil), sink: sink}
		fl.f.epoch = ""
		o := &observer{fl: fl, first: make(chan struct{}), failed: make(chan struct{})}
		for j, b := range bs {
			if err := o.Apply(context.Background(), b); err != nil {
				t.Fatalf("seed %d, batch %d: %v", i, j, err)
			}
		}
		t.Logf("seed %d: %v at %d", i, sink.state, fl.f.Version())
	}
}

// versionSink is an intSink that also checks the versions it is told
// about: within an epoch they never go back.
type versionSink struct {
	intSink
	t       *testing.T
	version uint64
	commits int
}

func (s *versionSink) Commit(events []Event, reset bool) {
	for _, ev := range events {
		if !reset && ev.Version < s.version {
			s.t.Fatalf("an event at version %d after one at %d", ev.Version, s.version)
		}
		s.version = ev.Version
	}
	s.commits++
	s.intSink.Commit(events, reset)
}

// TestSnapshotCursorUnderWrites drives a subscription's cursor by hand
// against a model that changes between every two batches it sends (sets,
// deletes, keys deleted and added again, bursts of deletes that compact the
// slots under the cursor, bursts longer than the log), through the wire
// codec, into a mirror. After
// every batch the mirror holds exactly the model's state at the mirror's
// version, which never goes back; it ends equal to the model; and a log too
// short for the changes made during a snapshot makes the snapshot start
// again rather than end wrong.
func TestSnapshotCursorUnderWrites(t *testing.T) {
	seeds := uint64(10)
	if raceEnabled {
		seeds = 3
	}
	for _, tc := range []struct {
		name    string
		logSize int
		writes  int // changes between two batches
	}{
		{"log-covers", 1024, 3},
		{"some-restart", 400, 8},
		{"restarts", 24, 40},
		{"quiet", 4096, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var total driveStats
			for seed := uint64(1); seed <= seeds; seed++ {
				st := driveSnapshot(t, seed, tc.logSize, tc.writes)
				total.batches += st.batches
				total.firsts += st.firsts
				total.compactions += st.compactions
			}
			t.Logf("%d batches, %d snapshots started (or started again), %d compactions under a snapshot's cursor",
				total.batches, total.firsts, total.compactions)
			if tc.writes > 0 && total.compactions == 0 {
				t.Error("no compaction happened under a snapshot under way")
			}
			if tc.logSize < 1024 && total.firsts <= int(seeds) {
				t.Error("no snapshot had to start again")
			}
		})
	}
}

type driveStats struct{ batches, firsts, compactions int }

// history is every change made to a model, to tell its state at any
// version.
type history struct {
	events []Event
	next   int // events[:next] are in state
	state  map[string]int
}

// at advances the state to version v.
func (h *history) at(t *testing.T, v uint64) map[string]int {
	for ; h.next < len(h.events) && h.events[h.next].Version <= v; h.next++ {
		ev := h.events[h.next]
		var key string
		var val int
		if broker.Unmarshal(ev.Key, &key) != nil || (!ev.Deleted && broker.Unmarshal(ev.Value, &val) != nil) {
			t.Fatal("a change does not decode")
		}
		if ev.Deleted {
			delete(h.state, key)
		} else {
			h.state[key] = val
		}
	}
	return h.state
}

func driveSnapshot(t *testing.T, seed uint64, logSize, writes int) driveStats {
	rng := rand.New(rand.NewPCG(seed, 7))
	src := New(logSize, nil)
	hist := &history{state: map[string]int{}}
	keys := 300 + rng.IntN(300)
	for i := 0; i < keys; i++ {
		hist.events = append(hist.events, src.Set(enc(fmt.Sprint("k", i)), enc(i)))
	}
	sink := &versionSink{intSink: intSink{state: map[string]int{}}, t: t}
	fl := &Follower{f: New(64, nil), sink: sink}
	fl.f.epoch = ""
	o := &observer{fl: fl, first: make(chan struct{}), failed: make(chan struct{})}
	s := &Subscription{f: src, maxBytes: 1024}
	src.mu.Lock()
	src.subs[s] = struct{}{}
	src.mu.Unlock()

	del := func(k []byte) {
		if ev, ok := src.Delete(k); ok {
			hist.events = append(hist.events, ev)
		}
	}
	change := func() {
		k := enc(fmt.Sprint("k", rng.IntN(2*keys)))
		if rng.IntN(3) == 0 {
			del(k)
		} else {
			hist.events = append(hist.events, src.Set(k, enc(rng.IntN(1000))))
		}
	}
	var stats driveStats
	for round := 0; ; round++ {
		src.mu.Lock()
		b := s.build()
		src.mu.Unlock()
		writing := round < 200 && writes > 0
		if b == nil {
			if !writing {
				break
			}
			change()
			continue
		}
		stats.batches++
		if b.First {
			stats.firsts++
		}
		var wire Batch
		if err := broker.Unmarshal(enc(b), &wire); err != nil {
			t.Fatal(err)
		}
		if writing {
			for i := 0; i < writes; i++ {
				change()
			}
			// Bursts of deletes compact the slots under the cursor.
			src.mu.Lock()
			n, scanning := len(src.slots), s.snap.active && !s.snap.scanned
			src.mu.Unlock()
			// Now and then the model moves further than the log reaches,
			// even with what it keeps for snapshots under way (as many
			// changes as it has entries): the subscription falls behind
			// and needs a snapshot (or, if one is under way, to start it
			// again).
			if rng.IntN(20) == 0 {
				for i := 0; i <= logSize+2*keys; i++ {
					change()
				}
			}
			if scanning && rng.IntN(3) == 0 {
				for i := 0; i < keys; i++ {
					del(enc(fmt.Sprint("k", rng.IntN(2*keys))))
				}
				src.mu.Lock()
				if scanning && len(src.slots) < n {
					stats.compactions++
				}
				src.mu.Unlock()
			}
		}
		before := fl.f.Version()
		if err := o.Apply(context.Background(), wire); err != nil {
			t.Fatalf("seed %d, batch %d: %v", seed, stats.batches, err)
		}
		if fl.f.Epoch() == src.Epoch() && fl.f.Version() < before {
			t.Fatalf("seed %d: the mirror went back from %d to %d", seed, before, fl.f.Version())
		}
		if fl.f.Epoch() == src.Epoch() {
			if want := hist.at(t, fl.f.Version()); !maps.Equal(want, sink.state) {
				t.Fatalf("seed %d, batch %d: the mirror's %d entries at version %d are not the model's %d then",
					seed, stats.batches, len(sink.state), fl.f.Version(), len(want))
			}
		}
		if err := fl.f.checkSlots(); err != nil {
			t.Fatal(err)
		}
		if err := src.checkSlots(); err != nil {
			t.Fatal(err)
		}
		if round > 100000 {
			t.Fatalf("seed %d: no end after %d batches", seed, stats.batches)
		}
	}
	if src.snapshots != 0 {
		t.Fatalf("seed %d: %d snapshots counted under way after the last", seed, src.snapshots)
	}
	if fl.f.Version() != src.Version() {
		t.Fatalf("seed %d: the mirror is at %d, the model at %d", seed, fl.f.Version(), src.Version())
	}
	want := map[string]int{}
	src.Read(func(_ string, _ uint64, st State) {
		for k, v := range st.All() {
			var key string
			var val int
			if broker.Unmarshal(k, &key) != nil || broker.Unmarshal(v, &val) != nil {
				t.Fatal("a model entry does not decode")
			}
			want[key] = val
		}
	})
	if !maps.Equal(want, sink.state) {
		t.Fatalf("seed %d: the mirror holds %d entries, the model %d, or they differ", seed, len(sink.state), len(want))
	}
	if stats.firsts == 0 {
		t.Fatalf("seed %d: no snapshot was sent", seed)
	}
	return stats
}
