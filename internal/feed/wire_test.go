package feed

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
)

// TestBatchWireBytes checks the Batch of the first Apply in the example of
// docs/protocol.md §11.10 (a snapshot of {"a": 1} in one batch, with the
// feed's token), as the subscription sends it: the argument of an Apply
// call whose head broker's TestWireBytes checks. The document shortens the
// epoch and the token; the bytes it shows are checked around the cut.
func TestBatchWireBytes(t *testing.T) {
	const epoch = "39d65859-9560-4ce2-b264-f37b25c78b63"
	const token = "6f1c" + "000000000000000000000000" + "7a64"
	b := Batch{Epoch: epoch, Version: 1, Snapshot: true, First: true, Token: token,
		Entries: []Change{{Key: cborText("a"), Value: []byte{0x01}}}}
	got, err := broker.Marshal(b)
	require.NoError(t, err)
	hexOf := func(s string) string { return hex.EncodeToString([]byte(s)) }
	want := "89" + "7824" + hexOf(epoch) + "01" + "f4f5f4" + "f6" + "81836161" + "01f4" + "f5" + "7820" + hexOf(token)
	assert.Equal(t, want, hex.EncodeToString(got))
	assert.True(t, strings.HasPrefix(hexOf(epoch), "3339") && strings.HasSuffix(hexOf(epoch), "3633"))
	assert.True(t, strings.HasPrefix(hexOf(token), "3666") && strings.HasSuffix(hexOf(token), "3634"))
	// The frame: the call head (86 03 01 01 65 4170706c79 00 81, 12 bytes)
	// and the batch, 97 bytes in all: uvarint 61.
	assert.Equal(t, 0x61, 12+len(got))
}

// cborText is s as a CBOR text string.
func cborText(s string) []byte {
	b, err := broker.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}
