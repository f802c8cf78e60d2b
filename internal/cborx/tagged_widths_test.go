package cborx

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// appendHeadWide appends a head in the width given (0: shortest; 1, 2, 4
// or 8: that many argument bytes, non-minimal when the value is small),
// as a peer's encoder may write it.
func appendHeadWide(b []byte, major byte, arg uint64, width int) []byte {
	switch width {
	case 1:
		if arg < 1<<8 {
			return append(b, major<<5|24, byte(arg))
		}
	case 2:
		if arg < 1<<16 {
			return binary.BigEndian.AppendUint16(append(b, major<<5|25), uint16(arg))
		}
	case 4:
		if arg < 1<<32 {
			return binary.BigEndian.AppendUint32(append(b, major<<5|26), uint32(arg))
		}
	case 8:
		return binary.BigEndian.AppendUint64(append(b, major<<5|27), arg)
	}
	return AppendHead(b, major, arg)
}

// randomTagged appends a random item, whose heads take random widths, in
// which tag 59000 holds unsigned integers (or, now and then, something
// else) at random places; it returns how many unsigned integers it
// tagged.
func randomTagged(rng *rand.Rand, b []byte, depth int) ([]byte, int) {
	w := []int{0, 1, 2, 4, 8}[rng.IntN(5)]
	switch k := rng.IntN(10); {
	case k < 2 || depth > 8:
		return appendHeadWide(b, MajorUint, rng.Uint64N(100000), w), 0
	case k < 3:
		return append(appendHeadWide(b, MajorBytes, 3, w), 0xd9, 0xe6, 0x78), 0 // a tag's bytes inside a string
	case k < 5:
		b = appendHeadWide(b, MajorTag, 59000, w)
		if rng.IntN(4) == 0 {
			return AppendText(b, "not an id"), 0
		}
		return appendHeadWide(b, MajorUint, rng.Uint64N(1<<40), []int{0, 1, 2, 4, 8}[rng.IntN(5)]), 1
	case k < 6:
		b = appendHeadWide(b, MajorTag, 59001, w)
		return randomTagged(rng, b, depth+1)
	case k < 8:
		n := rng.IntN(4)
		b = appendHeadWide(b, MajorArray, uint64(n), w)
		total := 0
		for range n {
			var c int
			b, c = randomTagged(rng, b, depth+1)
			total += c
		}
		return b, total
	default:
		n := rng.IntN(3)
		b = appendHeadWide(b, MajorMap, uint64(n), w)
		total := 0
		for range 2 * n {
			var c int
			b, c = randomTagged(rng, b, depth+1)
			total += c
		}
		return b, total
	}
}

// TestValidateTaggedAnyHeadWidth: for random items whose heads, tag 59000's
// among them, take every width CBOR allows (a peer need not write the
// shortest), ValidateTagged reports the tag whenever CollectTagged finds a
// tagged id, and CollectTagged finds every one: a receiver that skips the
// walk when validation saw no tag never misses a reference it must
// account and give back.
func TestValidateTaggedAnyHeadWidth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	seen := 0
	for range 20000 {
		b, want := randomTagged(rng, nil, 0)
		found, err := ValidateTagged(b, DefaultLimits, 59000)
		require.NoError(t, err, "% x", b)
		got := 0
		require.NoError(t, CollectTagged(b, 59000, func(uint64) { got++ }))
		require.Equal(t, want, got, "% x", b)
		if got > 0 {
			require.True(t, found, "% x", b)
			seen++
		}
	}
	require.Greater(t, seen, 1000)
}
