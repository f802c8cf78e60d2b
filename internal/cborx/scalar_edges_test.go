package cborx

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScalarEdges holds the validator's first-byte path (scalar,
// smallArray) to item's results at the edges where the two could part:
// each limit met exactly and exceeded by one through small arrays, text
// strings of 23 and 24 bytes with a byte >= 0x80 or invalid UTF-8 last,
// integer heads of every width cut short by one byte, a map and tags
// inside a small array, and non-minimal heads. Each case says whether
// Validate must accept it, and both paths must agree on the error and on
// the tag report.
func TestScalarEdges(t *testing.T) {
	rep := func(b []byte, n int) []byte { return bytes.Repeat(b, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	ascii23 := rep([]byte{'a'}, 23)
	cases := []struct {
		name string
		b    []byte
		lim  Limits
		ok   bool
		tag  bool // the tag 59000 is reported
	}{
		{"depth at the limit", cat(rep([]byte{0x81}, 3), []byte{0x01}), Limits{MaxDepth: 3, MaxItems: 8}, true, false},
		{"depth one over", cat(rep([]byte{0x81}, 4), []byte{0x01}), Limits{MaxDepth: 3, MaxItems: 8}, false, false},
		{"23 items at MaxItems 23", cat([]byte{0x81, 0x97}, rep([]byte{0x00}, 23)), Limits{MaxDepth: 4, MaxItems: 23}, true, false},
		{"23 items at MaxItems 22", cat([]byte{0x81, 0x97}, rep([]byte{0x00}, 23)), Limits{MaxDepth: 4, MaxItems: 22}, false, false},
		{"24 items (a two-byte head) at MaxItems 24", cat([]byte{0x81, 0x98, 24}, rep([]byte{0x00}, 24)), Limits{MaxDepth: 4, MaxItems: 24}, true, false},
		{"total at the limit", cat([]byte{0x82, 0x97}, rep([]byte{0x00}, 23), []byte{0x97}, rep([]byte{0x00}, 23)), Limits{MaxDepth: 4, MaxItems: 23, MaxTotal: 48}, true, false},
		{"total one over", cat([]byte{0x82, 0x97}, rep([]byte{0x00}, 23), []byte{0x97}, rep([]byte{0x00}, 23)), Limits{MaxDepth: 4, MaxItems: 23, MaxTotal: 47}, false, false},
		{"a small array with fewer bytes than items", cat([]byte{0x81, 0x97}, rep([]byte{0x00}, 22)), DefaultLimits, false, false},
		{"23 ASCII bytes", cat([]byte{0x81, 0x77}, ascii23), DefaultLimits, true, false},
		{"22 ASCII bytes and 0xff", cat([]byte{0x81, 0x77}, ascii23[:22], []byte{0xff}), DefaultLimits, false, false},
		{"22 ASCII bytes and a lone lead byte", cat([]byte{0x81, 0x77}, ascii23[:22], []byte{0xc3}), DefaultLimits, false, false},
		{"21 ASCII bytes and é", cat([]byte{0x81, 0x77}, ascii23[:21], []byte{0xc3, 0xa9}), DefaultLimits, true, false},
		{"an overlong NUL", []byte{0x81, 0x62, 0xc0, 0x80}, DefaultLimits, false, false},
		{"a surrogate", []byte{0x81, 0x63, 0xed, 0xa0, 0x80}, DefaultLimits, false, false},
		{"24 bytes, invalid last", cat([]byte{0x81, 0x78, 24}, ascii23, []byte{0xff}), DefaultLimits, false, false},
		{"a text string cut short by one", cat([]byte{0x81, 0x77}, ascii23[:22]), DefaultLimits, false, false},
		{"uint8 cut short", []byte{0x81, 0x18}, DefaultLimits, false, false},
		{"uint16 cut short", []byte{0x81, 0x19, 0x00}, DefaultLimits, false, false},
		{"uint32 cut short", []byte{0x81, 0x1a, 0, 0, 0}, DefaultLimits, false, false},
		{"uint64 cut short", []byte{0x81, 0x1b, 0, 0, 0, 0, 0, 0, 0}, DefaultLimits, false, false},
		{"nint64 cut short", []byte{0x81, 0x3b, 0, 0, 0, 0, 0, 0, 0}, DefaultLimits, false, false},
		{"every width whole, non-minimal", []byte{0x85, 0x18, 0x00, 0x19, 0, 0, 0x1a, 0, 0, 0, 0, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, DefaultLimits, true, false},
		{"reserved 28 in an array", []byte{0x81, 0x1c}, DefaultLimits, false, false},
		{"indefinite text in an array", []byte{0x81, 0x7f, 0x60, 0xff}, DefaultLimits, false, false},
		{"indefinite array in an array", []byte{0x81, 0x9f, 0xff}, DefaultLimits, false, false},
		{"a break in an array", []byte{0x81, 0xff}, DefaultLimits, false, false},
		{"a two-byte false", []byte{0x81, 0xf8, 0x14}, DefaultLimits, false, false},
		{"simple 19", []byte{0x81, 0xf3}, DefaultLimits, false, false},
		{"a map inside a small array", []byte{0x82, 0x81, 0xa1, 0x61, 'k', 0xf6, 0x00}, DefaultLimits, true, false},
		{"a map too deep inside small arrays", []byte{0x81, 0x81, 0x81, 0xa1, 0x00, 0x00}, Limits{MaxDepth: 3, MaxItems: 8}, false, false},
		{"the tag inside small arrays", []byte{0x81, 0x81, 0xd9, 0xe6, 0x78, 0x07}, DefaultLimits, true, true},
		{"another tag inside small arrays", []byte{0x81, 0x81, 0xd9, 0xe6, 0x77, 0x07}, DefaultLimits, true, false},
		{"the tag, past a depth limit", []byte{0x81, 0x81, 0xd9, 0xe6, 0x78, 0x07}, Limits{MaxDepth: 2, MaxItems: 8}, false, false},
		{"trailing bytes after a small array", []byte{0x81, 0x00, 0x00}, DefaultLimits, false, false},
	}
	for _, c := range cases {
		fast, general, ff, gf := validateBoth(c.b, c.lim)
		require.Equal(t, general, fast, c.name)
		require.Equal(t, gf, ff, c.name)
		if c.ok {
			require.NoError(t, fast, c.name)
		} else {
			require.Error(t, fast, c.name)
		}
		if c.ok {
			require.Equal(t, c.tag, ff, "%s: tag report", c.name)
		}
	}
}

// FuzzScalarLimits is FuzzScalar with the limits fuzzed too, small enough
// to be met and exceeded by a short input (a MaxTotal of 0 is no bound).
func FuzzScalarLimits(f *testing.F) {
	for _, b := range scalarSeeds() {
		f.Add(b, uint8(3), uint8(4), uint8(8))
	}
	f.Add([]byte{0x82, 0x97, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}, uint8(2), uint8(23), uint8(25))
	f.Fuzz(func(t *testing.T, b []byte, depth, items, total uint8) {
		lim := Limits{MaxDepth: int(depth % 40), MaxItems: int(items % 40), MaxTotal: int(total)}
		fast, general, ff, gf := validateBoth(b, lim)
		if (fast == nil) != (general == nil) || fast != nil && fast.Error() != general.Error() || ff != gf {
			t.Fatalf("limits %+v: scalar: %v, %v; item: %v, %v", lim, fast, ff, general, gf)
		}
	})
}
