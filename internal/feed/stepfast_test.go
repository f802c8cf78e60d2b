package feed

import (
	"bytes"
	"math"
	"reflect"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

// decodeBoth decodes data with and without stepFast, bypassing the
// process's memo of recent batches, and returns both results.
func decodeBoth(data []byte) (fast, general Batch, fastErr, generalErr error) {
	decode := func(general bool) (Batch, error) {
		d := batchDecoder{r: cborx.NewReader(data), general: general}
		var b Batch
		err := d.batch(&b)
		return b, err
	}
	fast, fastErr = decode(false)
	general, generalErr = decode(true)
	return fast, general, fastErr, generalErr
}

// stepFastSeeds are batches of steps of the shapes stepFast reads and of
// shapes it leaves to the general reader.
func stepFastSeeds() [][]byte {
	nested := enc(map[string]any{"a": []any{1, "b", nil}})
	big := bytes.Repeat([]byte("x"), 300)
	many := make([]Change, 30)
	for i := range many {
		many[i] = change("m", i)
	}
	steps := []Step{
		{From: 0, Version: 1, Changes: []Change{change("k1", 1)}},
		{From: 1, Version: 2, Changes: []Change{{Key: enc("k1"), Deleted: true}}},
		{From: 2, Version: 3, Changes: []Change{{Key: enc(-7), Value: enc(1.5)}, {Key: enc(true), Value: nested}}},
		{From: 3, Version: 4},
		{From: 4, Version: 5, Changes: []Change{}},
		{From: 5, Version: math.MaxUint64, Changes: []Change{{Key: enc(string(big)), Value: enc(big)}}},
		{From: math.MaxUint32 + 1, Version: math.MaxUint32 + 2, Changes: many},
	}
	var out [][]byte
	out = append(out, appendBatch(nil, &Batch{Epoch: testToken, Version: 5, Steps: steps}))
	for i := range steps {
		out = append(out, appendBatch(nil, &Batch{Epoch: testToken, Version: steps[i].Version, Steps: steps[i : i+1]}))
	}
	// Shapes the general reader refuses or reads otherwise: a deleted
	// change with a value, a non-minimal head, undefined as a value, a
	// two-byte simple value below 32, an indefinite string.
	odd := func(step []byte) []byte {
		b := appendBatchHead(nil, testToken, 1, false, false, false)
		b = cborx.AppendArray(b, 1)
		b = append(b, step...)
		b = cborx.AppendNull(b)
		return appendBatchTail(b, false, "")
	}
	out = append(out,
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf5}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xf7, 0xf5}),
		odd([]byte{0x83, 0x18, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf4}),
		odd([]byte{0x98, 0x03, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf4}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xf8, 0x10, 0xf4}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x7f, 0x61, 'k', 0xff, 0x01, 0xf4}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x65, 'k', 0x01, 0xf4}),
		odd([]byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xfc, 0xf4}),
	)
	return out
}

// TestStepFastMatchesGeneral: stepFast reads every step as the general
// reader does, and leaves what it does not read to it, so that a batch
// decodes to the same steps, or fails with the same error, either way.
func TestStepFastMatchesGeneral(t *testing.T) {
	for i, data := range stepFastSeeds() {
		fast, general, fe, ge := decodeBoth(data)
		require.Equal(t, ge, fe, "seed %d", i)
		require.True(t, reflect.DeepEqual(general, fast), "seed %d: %+v\n%+v", i, fast, general)
	}
	// Every prefix and every one-byte change of the first seed.
	data := stepFastSeeds()[0]
	for n := range len(data) {
		fast, general, fe, ge := decodeBoth(data[:n])
		require.Equal(t, ge, fe, "prefix %d", n)
		require.True(t, reflect.DeepEqual(general, fast), "prefix %d", n)
	}
	for i := range data {
		for _, x := range []byte{0x00, 0x01, 0x18, 0x1c, 0x1f, 0x40, 0x60, 0x80, 0x83, 0xa0, 0xc0, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xfb, 0xff} {
			m := bytes.Clone(data)
			m[i] = x
			fast, general, fe, ge := decodeBoth(m)
			require.Equal(t, ge, fe, "byte %d = %#x", i, x)
			require.True(t, reflect.DeepEqual(general, fast), "byte %d = %#x", i, x)
		}
	}
}

// FuzzStepFast checks TestStepFastMatchesGeneral's property on any bytes.
func FuzzStepFast(f *testing.F) {
	for _, s := range stepFastSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, general, fe, ge := decodeBoth(data)
		if (fe == nil) != (ge == nil) || fe != nil && fe.Error() != ge.Error() {
			t.Fatalf("errors differ: fast %v, general %v", fe, ge)
		}
		if !reflect.DeepEqual(general, fast) {
			t.Fatalf("batches differ:\n%+v\n%+v", fast, general)
		}
	})
}

// BenchmarkDecodeSteps decodes a batch of 2,048 steps of a Map[string,
// int], as a mirror of the fan-out benchmark receives them, with stepFast
// (fast) and without (general).
func BenchmarkDecodeSteps(b *testing.B) {
	steps := make([]Step, maxBatchChanges)
	for i := range steps {
		steps[i] = Step{From: uint64(i), Version: uint64(i + 1), Changes: []Change{change("k"+strconv.Itoa(i%1000), i)}}
	}
	data := appendBatch(nil, &Batch{Epoch: testToken, Version: uint64(len(steps)), Steps: steps})
	for _, general := range []bool{false, true} {
		name := "fast"
		if general {
			name = "general"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for range b.N {
				d := batchDecoder{r: cborx.NewReader(data), general: general}
				var out Batch
				if err := d.batch(&out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestEncodedLen: a step's encodedLen is the length of its encoding, so
// that stepsBatch sizes a batch exactly.
func TestEncodedLen(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 70000)
	many := make([]Change, 300)
	for i := range many {
		many[i] = change("m", i)
	}
	for _, st := range []Step{
		{From: 0, Version: 1},
		{From: 23, Version: 24, Changes: []Change{}},
		{From: 255, Version: 256, Changes: []Change{change("k", 1), {Key: enc("k"), Deleted: true}}},
		{From: 65535, Version: 65536, Changes: []Change{{Key: enc(string(big)), Value: enc(big)}}},
		{From: math.MaxUint32, Version: math.MaxUint32 + 1, Changes: many},
		{From: math.MaxUint64 - 1, Version: math.MaxUint64, Changes: []Change{{}}},
	} {
		ls := &logStep{Step: st}
		require.Equal(t, len(appendStep(nil, &st)), ls.encodedLen(), "step %d→%d", st.From, st.Version)
		out := stepsBatch(&tail{epoch: testToken, version: st.Version, log: []*logStep{ls}, encMu: new(sync.Mutex)}, st.From, maxBatchBytes, false, 0)
		var b Batch
		require.NoError(t, b.UnmarshalCBOR(out.bytes))
		require.Equal(t, appendStep(nil, &st), *ls.enc.Load(), "the step's encoding as kept")
	}
}
