package feed

import (
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
	f := New(0, nil)
	ok := []Change{{Key: enc("fits"), Value: nestedList(EntryDepth)}}
	require.NoError(t, f.resync("e1", 1, ok, nil))

	f = New(0, nil)
	deep := []Change{{Key: enc("deep"), Value: nestedList(EntryDepth + 1)}}
	err := f.resync("e1", 1, deep, nil)
	require.ErrorIs(t, err, broker.ErrTooDeep)
	assert.Zero(t, f.Version(), "nothing applied")
	assert.ErrorIs(t, CheckEntry(nestedList(EntryDepth+1)), broker.ErrTooDeep)
	assert.NoError(t, CheckEntry(nestedList(EntryDepth)))
}
