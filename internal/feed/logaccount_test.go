package feed

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// checkLogAccounts recomputes what the feed counts as it goes (stateBytes,
// logBytes, logLen) from its slots and its log, and checks the log's
// bounds: the counts never drift from what they count, never go below
// zero, and, checked right after a change was logged (bounded), the log
// keeps within its bound (grown by the state while snapshots are under
// way; the log is trimmed as changes come).
func checkLogAccounts(t *testing.T, f *Feed, bounded bool) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	state, live := 0, 0
	for i := range f.slots {
		if sl := &f.slots[i]; sl.live {
			state += len(sl.key) + len(sl.value)
			live++
		}
	}
	require.Equal(t, live, len(f.index))
	require.Equal(t, state, f.stateBytes, "stateBytes is the live keys and values")
	logBytes, logLen := 0, 0
	for _, ls := range f.log {
		require.Equal(t, changesSize(ls.Changes), ls.size)
		logBytes += ls.cost()
		logLen += len(ls.Changes)
	}
	require.Equal(t, logBytes, f.logBytes, "logBytes is the cost of the steps in the log")
	require.Equal(t, logLen, f.logLen)
	require.GreaterOrEqual(t, f.logBytes, 0)
	require.GreaterOrEqual(t, f.stateBytes, 0)
	if !bounded {
		return
	}
	if f.logMaxBytes > 0 {
		bound := f.logMaxBytes
		if f.snapshots > 0 || f.sharing.Load() > 0 {
			bound += f.stateBytes + logEntryCost*len(f.index)
		}
		require.LessOrEqual(t, f.logBytes, bound)
	}
	growing := f.snapshots > 0 || f.sharing.Load() > 0
	if growing {
		require.LessOrEqual(t, f.logLen, f.logMax+len(f.index))
	} else {
		require.LessOrEqual(t, f.logLen, f.logMax)
	}
}

// TestLogAccountsUnderRandomWrites: a model's Sets (new keys, replaced
// values of other sizes, values larger than the byte bound on their
// own), Deletes (enough to compact its slots many times) and snapshots
// starting and ending keep stateBytes and logBytes exactly what they
// count, and the log within its bounds.
func TestLogAccountsUnderRandomWrites(t *testing.T) {
	sizes := []int{0, 1, 100, 4 << 10, 64 << 10, 1 << 20}
	huge := bytes.Repeat([]byte{'h'}, DefaultLogBytes+1)
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			f := New(0, nil)
			for op := range 1500 {
				key := enc(fmt.Sprint("k", rng.IntN(200)))
				logged := false
				switch r := rng.IntN(100); {
				case r < 1:
					f.Set(key, enc(huge)) // a step larger than the whole bound
					logged = true
				case r < 60:
					f.Set(key, enc(bytes.Repeat([]byte{'v'}, sizes[rng.IntN(len(sizes))])))
					logged = true
				case r < 95:
					f.Delete(key)
				case r < 97:
					f.mu.Lock()
					f.snapshots++
					f.mu.Unlock()
				default:
					f.mu.Lock()
					f.snapshots = max(f.snapshots-1, 0)
					f.mu.Unlock()
				}
				if op%7 == 0 || logged {
					checkLogAccounts(t, f, logged)
				}
			}
			checkLogAccounts(t, f, false)
			// Snapshots over, the next change trims the log to its own bound.
			f.mu.Lock()
			f.snapshots = 0
			f.mu.Unlock()
			f.Set(enc("last"), enc(1))
			checkLogAccounts(t, f, true)
		})
	}
}

// TestLogAccountsOfAMirror: a mirror's feed (resyncs of another epoch,
// which replace the state; resyncs of the same epoch, logged as one
// step; batches of steps with one step larger than the byte bound in the
// middle) keeps its counts exact; the steps after the huge one stay
// logged and a subscription from before it needs a snapshot.
func TestLogAccountsOfAMirror(t *testing.T) {
	f := New(0, nil)
	entries := func(n, size int) map[string]Change {
		m := map[string]Change{}
		for i := range n {
			c := Change{Key: enc(fmt.Sprint("k", i)), Value: enc(bytes.Repeat([]byte{'e'}, size))}
			m[string(c.Key)] = c
		}
		return m
	}
	require.NoError(t, f.resync("e1", 10, entries(100, 1000), nil))
	checkLogAccounts(t, f, true)
	require.NoError(t, f.resync("e1", 12, entries(50, 2000), nil)) // same epoch: a logged diff
	checkLogAccounts(t, f, true)
	n, _, _ := logState(f)
	require.Equal(t, 100, n, "the diff, 50 replaced and 50 deleted, is one step")

	var steps []Step
	v := uint64(12)
	for i := range 300 {
		c := Change{Key: enc(fmt.Sprint("s", i%40)), Value: enc(i)}
		if i == 150 {
			c.Value = enc(bytes.Repeat([]byte{'H'}, DefaultLogBytes))
		}
		if i%9 == 0 {
			c = Change{Key: enc(fmt.Sprint("s", i%40)), Deleted: true}
		}
		steps = append(steps, Step{From: v, Version: v + 1, Changes: []Change{c}})
		v++
	}
	require.NoError(t, f.applySteps("e1", steps, nil))
	checkLogAccounts(t, f, true)
	n, _, from := logState(f)
	require.Equal(t, 149, n, "the steps after the huge one")
	require.Equal(t, uint64(12+151), from)
	f.mu.Lock()
	require.False(t, f.covered(12+150))
	require.True(t, f.covered(12+151))
	f.mu.Unlock()

	require.NoError(t, f.resync("e2", 5, entries(10, 10), nil)) // another epoch: a new log
	checkLogAccounts(t, f, true)
	n, size, _ := logState(f)
	require.Zero(t, n)
	require.Zero(t, size)
}
