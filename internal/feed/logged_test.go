package feed

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoggedSharedByMirrorsOfOneBatch: the mirrors of a process that apply
// the same decoded batch log the same entries, made once; a mirror that
// skips the steps it holds gets the entries of the rest; steps that are
// not a remembered batch's get entries of their own. Each entry has its
// step and its size.
func TestLoggedSharedByMirrorsOfOneBatch(t *testing.T) {
	steps := make([]Step, 100)
	for i := range steps {
		steps[i] = Step{From: uint64(i), Version: uint64(i + 1),
			Changes: []Change{{Key: enc(fmt.Sprint("key", i)), Value: enc(i)}}}
	}
	data := appendBatch(nil, &Batch{Epoch: "e1", Version: 100, Steps: steps})
	require.GreaterOrEqual(t, len(data), minShared)
	var a, b Batch
	require.NoError(t, a.UnmarshalCBOR(data))
	require.NoError(t, b.UnmarshalCBOR(bytes.Clone(data)))
	require.Same(t, &a.Steps[0], &b.Steps[0], "the second mirror shares the first one's decoding")

	la := recent.logged(a.Steps)
	lb := recent.logged(b.Steps[10:])
	require.Len(t, la, 100)
	require.Len(t, lb, 90)
	assert.Same(t, &la[10], &lb[0], "made once for both mirrors")
	for i := range la {
		assert.Equal(t, steps[i].Version, la[i].Version)
		assert.Equal(t, len(steps[i].Changes[0].Key)+len(steps[i].Changes[0].Value), la[i].size)
	}

	own := recent.logged(slices.Clone(a.Steps[5:]))
	require.Len(t, own, 95)
	assert.NotSame(t, &la[5], &own[0], "steps not remembered are logged apart")
	assert.Equal(t, la[5].Step, own[0].Step)
	assert.Equal(t, la[5].size, own[0].size)
	assert.Nil(t, recent.logged(nil))
}

// TestGiveEventsClears: an events array goes back to the pool cleared, so
// that it holds no key or value the mirror let go of, and one larger than
// a batch's worth does not go back.
func TestGiveEventsClears(t *testing.T) {
	events := takeEvents(3)
	events = append(events, Event{Key: enc("k"), Value: enc(1), Version: 1})
	full := events[:1]
	giveEvents(events)
	assert.Equal(t, Event{}, full[0])

	big := make([]Event, 1, maxBatchChanges+1)
	big[0] = Event{Key: enc("k")}
	giveEvents(big)
	assert.Equal(t, enc("k"), big[0].Key, "an array too large to keep is left alone")
}
