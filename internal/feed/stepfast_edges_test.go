package feed

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

// TestStepFastEdges holds stepFast to the general reader at the edges of
// the shape it reads: 23 changes (its own) and 24 (the general reader's),
// heads of every width, a negative or oversized version, a flag that is
// not a boolean, keys and values that are not plain, a deleted change's
// value null or undefined or not, and a step cut short or followed by
// more. Each case says whether the batch must decode.
func TestStepFastEdges(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	batch := func(step []byte) []byte {
		b := appendBatchHead(nil, testToken, 1, false, false, false)
		b = cborx.AppendArray(b, 1)
		b = append(b, step...)
		b = cborx.AppendNull(b)
		return appendBatchTail(b, false, "")
	}
	ch := []byte{0x83, 0x61, 'k', 0x01, 0xf4}
	changes := func(n int) []byte { return cat(cborx.AppendArray(nil, n), bytes.Repeat(ch, n)) }
	cases := []struct {
		name string
		step []byte
		ok   bool
	}{
		{"23 changes", cat([]byte{0x83, 0x00, 0x01}, changes(23)), true},
		{"24 changes", cat([]byte{0x83, 0x00, 0x01}, changes(24)), true},
		{"23 changes announced, 22 there", cat([]byte{0x83, 0x00, 0x01, 0x97}, bytes.Repeat(ch, 22)), false},
		{"versions of every width", cat([]byte{0x83, 0x1b, 0, 0, 0, 0, 0, 0, 0, 0, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, changes(1)), true},
		{"a version cut short", []byte{0x83, 0x00, 0x1b, 0xff, 0xff}, false},
		{"a negative version", cat([]byte{0x83, 0x00, 0x20}, changes(1)), false},
		{"a negative from", cat([]byte{0x83, 0x3b, 0, 0, 0, 0, 0, 0, 0, 0, 0x01}, changes(1)), false},
		{"a float version", cat([]byte{0x83, 0x00, 0xf9, 0x3c, 0x00}, changes(1)), false},
		{"a flag that is null", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf6}, false},
		{"a flag that is 1", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0x01}, false},
		{"a two-byte true", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0x01, 0xf8, 0x15}, false},
		{"deleted, value null", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xf6, 0xf5}, true},
		{"deleted, value undefined", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xf7, 0xf5}, true},
		{"deleted, value false", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xf4, 0xf5}, false},
		{"a tagged key, a map value", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0xc1, 0x01, 0xa1, 0x00, 0x81, 0x00, 0xf4}, true},
		{"a float key, a byte-string value", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0x42, 1, 2, 0xf4}, true},
		{"a key string cut short", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x65, 'k', 0x01, 0xf4}, false},
		{"a value that is a break", []byte{0x83, 0x00, 0x01, 0x81, 0x83, 0x61, 'k', 0xff, 0xf4}, false},
		{"a change of four", []byte{0x83, 0x00, 0x01, 0x81, 0x84, 0x61, 'k', 0x01, 0xf4, 0xf4}, false},
		{"a step of four", cat([]byte{0x84, 0x00, 0x01}, changes(1), []byte{0x00}), false},
		{"a step of three with a fourth item after", cat([]byte{0x83, 0x00, 0x01}, changes(1), []byte{0x00}), false},
		{"changes null", []byte{0x83, 0x00, 0x01, 0xf6}, true},
	}
	for _, c := range cases {
		fast, general, fe, ge := decodeBoth(batch(c.step))
		require.Equal(t, ge, fe, c.name)
		require.True(t, reflect.DeepEqual(general, fast), "%s: %+v\n%+v", c.name, fast, general)
		if c.ok {
			require.NoError(t, fe, c.name)
		} else {
			require.Error(t, fe, c.name)
		}
	}
}
