package cache

import (
	"math"
	"strings"
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

// TestMarshalEntryAgreesWithMarshal: the ints and strings marshalEntry
// encodes itself come out as the bytes broker.Marshal makes.
func TestMarshalEntryAgreesWithMarshal(t *testing.T) {
	ints := []int64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64,
		-1, -24, -25, -256, -257, -65537, math.MinInt64}
	for _, n := range ints {
		want, err := broker.Marshal(n)
		require.NoError(t, err)
		got, err := marshalEntry(n)
		require.NoError(t, err)
		require.Equal(t, want, got, "int64 %d", n)
		got, err = marshalEntry(int(n))
		require.NoError(t, err)
		require.Equal(t, want, got, "int %d", n)
	}
	for _, s := range []string{"", "a", strings.Repeat("x", 23), strings.Repeat("y", 24), strings.Repeat("z", 300), "é€😀", "\xff"} {
		want, wantErr := broker.Marshal(s)
		got, err := marshalEntry(s)
		require.Equal(t, wantErr, err, "%q", s)
		require.Equal(t, want, got, "%q", s)
	}
}

// TestAppendKeyAgreesWithMarshal: the keys appendKey encodes into the
// writer's buffer, which a long string outgrows, and a Value's unit key,
// come out as the bytes broker.Marshal makes.
func TestAppendKeyAgreesWithMarshal(t *testing.T) {
	check := func(v any, got []byte, err error) {
		t.Helper()
		want, wantErr := broker.Marshal(v)
		require.Equal(t, wantErr, err, "%#v", v)
		require.Equal(t, want, got, "%#v", v)
	}
	for _, n := range []int64{0, 24, -25, 1 << 32, math.MaxInt64, math.MinInt64} {
		var buf keyBuf
		got, err := appendKey(buf[:0], n)
		check(n, got, err)
		got, err = appendKey(buf[:0], int(n))
		check(n, got, err)
	}
	for _, s := range []string{"", "k1", strings.Repeat("x", 38), strings.Repeat("y", 39), strings.Repeat("z", 300), "\xff"} {
		var buf keyBuf
		got, err := appendKey(buf[:0], s)
		check(s, got, err)
	}
	var buf keyBuf
	got, err := appendKey(buf[:0], struct{}{})
	check(struct{}{}, got, err)
}
