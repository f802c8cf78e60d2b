package feed

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
)

func nestedList(n int) []byte {
	var v any = int64(1)
	for i := 0; i < n; i++ {
		v = []any{v}
	}
	return enc(v)
}

// TestMirrorRefusesASnapshotEntryItCouldNotPassOn: snapshot entries travel
// two levels higher than the steps a mirror sends downstream, so a mirror
// refuses one deeper than EntryDepth (only a peer that is not the
// reference model can send it) rather than hold an entry that would break
// every step it sends on.
func TestMirrorRefusesASnapshotEntryItCouldNotPassOn(t *testing.T) {
	batch := func(v []byte) *Batch {
		return &Batch{Epoch: "e1", Version: 1, Snapshot: true, First: true,
			Entries: []Change{{Key: enc("k"), Value: v}}}
	}
	o := &observer{}
	_, err := o.collect(batch(nestedList(EntryDepth)))
	require.NoError(t, err)

	o = &observer{}
	_, err = o.collect(batch(nestedList(EntryDepth + 1)))
	require.ErrorIs(t, err, broker.ErrTooDeep)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)
	assert.Contains(t, err.Error(), "snapshot entry")
	assert.ErrorIs(t, CheckEntry(nestedList(EntryDepth+1)), broker.ErrTooDeep)
	assert.NoError(t, CheckEntry(nestedList(EntryDepth)))
}
