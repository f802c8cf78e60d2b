package cache

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
)

// TestDecodeFastAgreesWithUnmarshal: every item decodeFast takes decodes
// to what broker.Unmarshal gives, and it leaves alone the items
// broker.Unmarshal refuses or that are not plain integers and text.
func TestDecodeFastAgreesWithUnmarshal(t *testing.T) {
	items := [][]byte{
		{0x00}, {0x17}, {0x18, 0x05}, {0x19, 0x01, 0x00}, {0x1b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0x1b, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0x20}, {0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		{0x3b, 0x80, 0, 0, 0, 0, 0, 0, 0}, {0x00, 0x00}, {0xf6}, {0xf9, 0x3c, 0x00}, {0xc1, 0x01},
		{0x60}, {0x63, 'a', 'b', 'c'}, {0x62, 0xff, 0xfe}, {0x43, 'a', 'b', 'c'}, {0x7f, 0x61, 'a', 0xff},
		{0x61}, {0x1c},
	}
	taken := 0
	for _, raw := range items {
		var fi, ui int
		if decodeFast(raw, &fi) {
			taken++
			require.NoError(t, broker.Unmarshal(raw, &ui), "% x", raw)
			require.Equal(t, ui, fi, "% x", raw)
		}
		var f64, u64 int64
		if decodeFast(raw, &f64) {
			require.NoError(t, broker.Unmarshal(raw, &u64), "% x", raw)
			require.Equal(t, u64, f64, "% x", raw)
		}
		var fs, us string
		if decodeFast(raw, &fs) {
			taken++
			require.NoError(t, broker.Unmarshal(raw, &us), "% x", raw)
			require.Equal(t, us, fs, "% x", raw)
		}
	}
	require.Equal(t, 9, taken, "the items decodeFast takes")
	var u uint
	require.False(t, decodeFast([]byte{0x01}, &u), "only the types it names")
}
