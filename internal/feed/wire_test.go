package feed

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/cborx"
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

// refBatch is Batch as fxamacker's reflective decoder reads it (the
// decoder before Batch.UnmarshalCBOR): the reference FuzzBatchDecode
// compares the hand-written decoder with.
type refBatch struct {
	_        struct{} `cbor:",toarray"`
	Epoch    string
	Version  uint64
	Stale    bool
	Snapshot bool
	More     bool
	Steps    []refStep
	Entries  []refChange
	First    bool
	Token    string
}

type refStep struct {
	_       struct{} `cbor:",toarray"`
	From    uint64
	Version uint64
	Changes []refChange
}

type refChange struct {
	_       struct{} `cbor:",toarray"`
	Key     cbor.RawMessage
	Value   cbor.RawMessage
	Deleted bool
}

// sameChanges compares decoded changes with the reference's, a deleted
// change's value (null on the wire) being nil in ours.
func sameChanges(t *testing.T, got []Change, want []refChange) {
	require.Equal(t, len(want), len(got))
	for i, w := range want {
		require.Equal(t, []byte(w.Key), []byte(got[i].Key))
		require.Equal(t, w.Deleted, got[i].Deleted)
		if !w.Deleted {
			require.Equal(t, []byte(w.Value), []byte(got[i].Value))
		}
	}
}

// FuzzBatchDecode: the hand-written decoder never panics; every batch it
// accepts, fxamacker's strict reflective decoding of the same shape
// accepts with the same fields, and encoding it again gives bytes that
// decode to the same batch; every refusal matches ErrBadBatch.
func FuzzBatchDecode(f *testing.F) {
	for _, bs := range seedBatches() {
		for _, b := range bs {
			f.Add(enc(b))
		}
	}
	f.Add([]byte{0x88, 0x60, 0x00, 0xf4, 0xf4, 0xf4, 0xf6, 0xf6, 0xf4})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Batch
		err := b.UnmarshalCBOR(data)
		if err != nil {
			require.ErrorIs(t, err, ErrBadBatch)
			return
		}
		var ref refBatch
		require.NoError(t, cbor.Unmarshal(data, &ref), "accepted by the hand-written decoder only")
		require.Equal(t, ref.Epoch, b.Epoch)
		require.Equal(t, ref.Version, b.Version)
		require.Equal(t, [5]any{ref.Stale, ref.Snapshot, ref.More, ref.First, ref.Token}, [5]any{b.Stale, b.Snapshot, b.More, b.First, b.Token})
		require.Equal(t, len(ref.Steps), len(b.Steps))
		for i, st := range ref.Steps {
			require.Equal(t, [2]uint64{st.From, st.Version}, [2]uint64{b.Steps[i].From, b.Steps[i].Version})
			sameChanges(t, b.Steps[i].Changes, st.Changes)
		}
		sameChanges(t, b.Entries, ref.Entries)
		again, err := b.MarshalCBOR()
		require.NoError(t, err)
		var b2 Batch
		require.NoError(t, b2.UnmarshalCBOR(again))
		require.Equal(t, again, appendBatch(nil, &b2))
	})
}

// TestBatchDecodeRefuses: malformed batches, through the broker's decoder
// (the path of an Apply call's argument), are errors matching ErrBadBatch.
func TestBatchDecodeRefuses(t *testing.T) {
	good := enc(Batch{Epoch: "e", Version: 2, Steps: []Step{{From: 1, Version: 2, Changes: []Change{{Key: enc("k"), Value: enc(1)}}}}, Token: ""})
	var b Batch
	require.NoError(t, broker.Unmarshal(good, &b))
	require.Equal(t, uint64(2), b.Steps[0].Version)
	for name, data := range map[string][]byte{
		"eight fields":         {0x88, 0x61, 'e', 0x00, 0xf4, 0xf4, 0xf4, 0xf6, 0xf6, 0xf4},
		"ten fields":           append([]byte{0x8a}, append(good[1:], 0xf4)...),
		"version as text":      {0x89, 0x61, 'e', 0x61, '1', 0xf4, 0xf4, 0xf4, 0xf6, 0xf6, 0xf4, 0x60},
		"stale as an integer":  {0x89, 0x61, 'e', 0x00, 0x00, 0xf4, 0xf4, 0xf6, 0xf6, 0xf4, 0x60},
		"step of two fields":   {0x89, 0x61, 'e', 0x00, 0xf4, 0xf4, 0xf4, 0x81, 0x82, 0x00, 0x01, 0xf6, 0xf4, 0x60},
		"deleted with a value": {0x89, 0x61, 'e', 0x01, 0xf4, 0xf4, 0xf4, 0x81, 0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf5, 0xf6, 0xf4, 0x60},
		"a map for the steps":  {0x89, 0x61, 'e', 0x00, 0xf4, 0xf4, 0xf4, 0xa0, 0xf6, 0xf4, 0x60},
		"token as bytes":       {0x89, 0x61, 'e', 0x00, 0xf4, 0xf4, 0xf4, 0xf6, 0xf6, 0xf4, 0x40},
	} {
		t.Run(name, func(t *testing.T) {
			var b Batch
			err := broker.Unmarshal(data, &b)
			require.Error(t, err)
			require.ErrorIs(t, err, ErrBadBatch)
			require.Zero(t, b.Epoch, "nothing decoded into the batch")
		})
	}
	require.ErrorIs(t, b.UnmarshalCBOR(append(good, 0x00)), ErrBadBatch, "trailing data")
	require.ErrorIs(t, b.UnmarshalCBOR(append([]byte{0xc1}, good...)), ErrBadBatch, "a tag around the batch")
}

// TestBatchDecodeValidatedPrefix: the broker hands DecodeValidated the
// rest of the message from the batch on; it decodes the batch at the
// start and returns its length, and a remembered batch whose bytes begin
// the data is taken as it is.
func TestBatchDecodeValidatedPrefix(t *testing.T) {
	steps := make([]Step, 64)
	for i := range steps {
		steps[i] = Step{From: uint64(i), Version: uint64(i + 1), Changes: []Change{{Key: enc(fmt.Sprint("prefix", i)), Value: enc(i)}}}
	}
	data := appendBatch(nil, &Batch{Epoch: "prefix-epoch", Version: 64, Steps: steps})
	require.GreaterOrEqual(t, len(data), minShared)
	var a, b Batch
	n, err := a.DecodeValidated(cborx.Trusted{}, append(slices.Clone(data), 0xf6, 0x01))
	require.NoError(t, err)
	require.Equal(t, len(data), n)
	require.Equal(t, uint64(64), a.Version)
	n, err = b.DecodeValidated(cborx.Trusted{}, append(slices.Clone(data), 0x80))
	require.NoError(t, err)
	require.Equal(t, len(data), n)
	require.Same(t, &a.Steps[0], &b.Steps[0], "the remembered batch")

	short := slices.Clone(data[:len(data)-1])
	_, err = b.DecodeValidated(cborx.Trusted{}, short)
	require.ErrorIs(t, err, ErrBadBatch, "a batch cut short is no remembered batch")
}
