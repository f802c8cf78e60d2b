package cborx

import (
	"bytes"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"
)

// validateBoth validates b as ValidateTagged does, with and without the
// validator's scalar path.
func validateBoth(b []byte, lim Limits) (fast, general error, fastFound, generalFound bool) {
	run := func(general bool) (bool, error) {
		v := validator{Reader: NewReader(b), lim: lim, watch: true, tag: 59000, general: general}
		err := v.run()
		return v.found, err
	}
	fastFound, fast = run(false)
	generalFound, general = run(true)
	return fast, general, fastFound, generalFound
}

// scalarSeeds hold the items scalar reads and those it leaves to item.
func scalarSeeds() [][]byte {
	var out [][]byte
	for _, v := range []any{
		[]any{0, 23, 24, 255, 256, 65536, uint64(1) << 40, -1, -24, -25, -1000, -(int64(1) << 40)},
		[]any{false, true, nil, "", "k1", "twenty-three bytes long", "twenty-four bytes long!!", "é", 1.5, []byte{1}},
		map[string]any{"a": []any{1, "b", nil}, "c": map[int]any{1: "x"}},
		[]any{cbor.Tag{Number: 59000, Content: 7}, cbor.Tag{Number: 1, Content: "x"}},
	} {
		b, err := cbor.Marshal(v)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	out = append(out,
		[]byte{0x83, 0xf7, 0xf8, 0x10, 0x01},       // a two-byte simple value below 32
		[]byte{0x83, 0x01, 0x1c, 0x01},             // reserved
		[]byte{0x83, 0x01, 0x3f, 0x01},             // indefinite negative
		[]byte{0x82, 0x19, 0x01},                   // cut short
		[]byte{0x82, 0x63, 'a', 'b'},               // a string cut short
		[]byte{0x82, 0x62, 0xc3, 0x28},             // invalid UTF-8
		[]byte{0x82, 0xf3, 0x01},                   // an unassigned simple value
		[]byte{0x82, 0x01, 0x01, 0x01},             // trailing data
		[]byte{0x81, 0x81, 0x81, 0x81, 0x81, 0x00}, // nesting
	)
	return out
}

// TestScalarMatchesItem: the validator's scalar path accepts and consumes
// exactly what item does, so that validation gives the same result, the
// same error and the same tag report either way.
func TestScalarMatchesItem(t *testing.T) {
	limits := []Limits{DefaultLimits, {MaxDepth: 3, MaxItems: 4, MaxTotal: 8}}
	check := func(b []byte, what string) {
		for _, lim := range limits {
			fast, general, ff, gf := validateBoth(b, lim)
			require.Equal(t, general, fast, what)
			require.Equal(t, gf, ff, what)
		}
	}
	for i, b := range scalarSeeds() {
		check(b, "seed")
		for n := range len(b) {
			check(b[:n], "prefix")
		}
		for j := range b {
			for _, x := range []byte{0x00, 0x17, 0x18, 0x1b, 0x1c, 0x1f, 0x20, 0x3b, 0x3f, 0x60, 0x77, 0x78, 0x80, 0xa0, 0xc0, 0xf3, 0xf4, 0xf7, 0xf8, 0xff} {
				m := bytes.Clone(b)
				m[j] = x
				check(m, "mutation of seed "+string(rune('0'+i)))
			}
		}
	}
}

// FuzzScalar checks TestScalarMatchesItem's property on any bytes.
func FuzzScalar(f *testing.F) {
	for _, b := range scalarSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, lim := range []Limits{DefaultLimits, {MaxDepth: 3, MaxItems: 4, MaxTotal: 8}} {
			fast, general, ff, gf := validateBoth(b, lim)
			if (fast == nil) != (general == nil) || fast != nil && fast.Error() != general.Error() || ff != gf {
				t.Fatalf("scalar: %v, %v; item: %v, %v", fast, ff, general, gf)
			}
		}
	})
}

// BenchmarkValidateSteps validates a message shaped as a cache batch of
// 2,048 steps of a Map[string, int] (versions, a short text key, an
// integer value, a flag), with the scalar path (fast) and without
// (general).
func BenchmarkValidateSteps(b *testing.B) {
	steps := make([]any, 2048)
	for i := range steps {
		steps[i] = []any{i, i + 1, []any{[]any{"k" + string(rune('0'+i%10)) + "23", i, false}}}
	}
	data, err := cbor.Marshal([]any{9, 3, []any{"0123456789abcdef0123456789abcdef", 2048, false, false, false, steps, nil, false, ""}})
	if err != nil {
		b.Fatal(err)
	}
	for _, general := range []bool{false, true} {
		name := "fast"
		if general {
			name = "general"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for range b.N {
				v := validator{Reader: NewReader(data), lim: DefaultLimits, watch: true, tag: 59000, general: general}
				if err := v.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
