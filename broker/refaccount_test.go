package broker

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

// refsBody is a message whose body is an array of sender references to
// ids, as its validation would have marked it.
func refsBody(ids []uint64) *message {
	b := cborx.AppendArray(nil, len(ids))
	for _, id := range ids {
		b = cborx.AppendUint(cborx.AppendTag(b, tagSenderRef), id)
	}
	return &message{body: b, senderRefs: true}
}

// TestRefAccountCounts checks the account's counts with a few ids (searched
// in its array) and with many (indexed), repeated ids and roots included,
// and that what it leaves to release is what the message sent minus what
// became handles.
func TestRefAccountCounts(t *testing.T) {
	for _, distinct := range []int{1, 3, refAccountScan, refAccountScan + 1, 200} {
		var ids []uint64
		for i := 1; i <= distinct; i++ {
			ids = append(ids, uint64(i), 0) // roots are not counted
			if i%3 == 0 {
				ids = append(ids, uint64(i)) // sent twice
			}
		}
		a := newRefAccount(refsBody(ids))
		require.NotNil(t, a, "%d ids", distinct)
		for i := 1; i <= distinct; i += 2 {
			a.took(uint64(i))
		}
		left := map[uint64]uint64{}
		a.untaken(func(id, n uint64) { left[id] += n })
		want := map[uint64]uint64{}
		for i := 1; i <= distinct; i++ {
			sent := uint64(1)
			if i%3 == 0 {
				sent = 2
			}
			if i%2 == 1 {
				sent--
			}
			if sent > 0 {
				want[uint64(i)] = sent
			}
		}
		assert.Equal(t, want, left, "%d ids", distinct)
		assert.Len(t, a.refs, distinct, "one entry per id")
		assert.Equal(t, distinct > refAccountScan, a.idx != nil, "indexed only past %d ids", refAccountScan)
		a.recycle()
	}
	assert.Nil(t, newRefAccount(refsBody([]uint64{0, 0})), "roots alone need no account")
}
