package cborx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAppendMatchesReferenceEncoder(t *testing.T) {
	cases := []struct {
		got  []byte
		want any
	}{
		{AppendUint(nil, 0), uint64(0)},
		{AppendUint(nil, 23), uint64(23)},
		{AppendUint(nil, 24), uint64(24)},
		{AppendUint(nil, 255), uint64(255)},
		{AppendUint(nil, 256), uint64(256)},
		{AppendUint(nil, 65536), uint64(65536)},
		{AppendUint(nil, math.MaxUint64), uint64(math.MaxUint64)},
		{AppendInt(nil, -1), int64(-1)},
		{AppendInt(nil, math.MinInt64), int64(math.MinInt64)},
		{AppendText(nil, "héllo"), "héllo"},
		{AppendBytes(nil, []byte{1, 2, 3}), []byte{1, 2, 3}},
		{AppendBool(nil, true), true},
		{AppendNull(nil), nil},
		{AppendFloat64(nil, 1.5), float64(1.5)},
	}
	for _, c := range cases {
		want, err := cbor.Marshal(c.want)
		require.NoError(t, err)
		assert.Equal(t, want, c.got, "%v", c.want)
	}
}

func TestReaderRoundTrip(t *testing.T) {
	var b []byte
	b = AppendArray(b, 5)
	b = AppendUint(b, 300)
	b = AppendInt(b, -5)
	b = AppendText(b, "m")
	b = AppendNull(b)
	b = AppendFloat32(b, 2.5)
	require.NoError(t, Validate(b, DefaultLimits))
	r := NewReader(b)
	n, err := r.ReadArray()
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	u, err := r.ReadUint()
	require.NoError(t, err)
	assert.Equal(t, uint64(300), u)
	i, err := r.ReadInt()
	require.NoError(t, err)
	assert.Equal(t, int64(-5), i)
	s, err := r.ReadText()
	require.NoError(t, err)
	assert.Equal(t, "m", string(s))
	assert.True(t, r.ReadNull())
	h, err := r.ReadHead()
	require.NoError(t, err)
	f, ok := h.Float()
	assert.True(t, ok)
	assert.Equal(t, 2.5, f)
	assert.Zero(t, r.Len())
}

func TestReaderTypeMismatchDoesNotConsume(t *testing.T) {
	r := NewReader(AppendText(nil, "x"))
	_, err := r.ReadUint()
	require.ErrorIs(t, err, ErrSyntax)
	assert.Zero(t, r.Offset())
}

func TestFloat16(t *testing.T) {
	for _, c := range []struct {
		bits uint16
		want float64
	}{{0x3c00, 1}, {0xc000, -2}, {0x7bff, 65504}, {0x0001, 5.960464477539063e-8}, {0x7c00, math.Inf(1)}} {
		assert.Equal(t, c.want, float16(c.bits))
	}
	assert.True(t, math.IsNaN(float16(0x7e00)))
}

func TestValidateRejects(t *testing.T) {
	deep := bytes.Repeat([]byte{0x81}, 40)
	deep = append(deep, 0x00)
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"empty":               {nil, ErrSyntax},
		"truncated head":      {[]byte{0x19, 0x01}, ErrSyntax},
		"truncated string":    {[]byte{0x63, 'a'}, ErrSyntax},
		"indefinite array":    {[]byte{0x9f, 0xff}, ErrSyntax},
		"indefinite string":   {[]byte{0x7f, 0xff}, ErrSyntax},
		"reserved ai":         {[]byte{0x1c}, ErrSyntax},
		"bad utf8":            {[]byte{0x62, 0xff, 0xfe}, ErrSyntax},
		"trailing":            {[]byte{0x01, 0x02}, ErrSyntax},
		"too deep":            {deep, ErrLimit},
		"huge array head":     {[]byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrLimit},
		"array past end":      {[]byte{0x83, 0x01}, ErrSyntax},
		"bad simple":          {[]byte{0xf8, 0x10}, ErrSyntax},
		"unassigned simple":   {[]byte{0xe0}, ErrSyntax},
		"break outside":       {[]byte{0xff}, ErrSyntax},
		"map past end":        {[]byte{0xa2, 0x01, 0x02}, ErrSyntax},
		"tag without content": {[]byte{0xc1}, ErrSyntax},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := Validate(c.in, DefaultLimits)
			require.Error(t, err)
			assert.ErrorIs(t, err, c.want)
		})
	}
}

func TestValidateAcceptsWellFormed(t *testing.T) {
	v := map[string]any{"a": []any{1, -2, "x", []byte{1}, 1.5, true, nil, map[any]any{1: 2}}}
	b, err := cbor.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, Validate(b, DefaultLimits))
	r := NewReader(b)
	require.NoError(t, r.Skip())
	assert.Zero(t, r.Len())
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	for _, body := range [][]byte{{0x01}, bytes.Repeat([]byte{0x40}, 300), AppendText(nil, strings.Repeat("z", 5000))} {
		buf := make([]byte, FramePrefix, FramePrefix+len(body))
		stream = append(stream, SealFrame(append(buf, body...))...)
	}
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20, 1024)
	b, err := fr.Next()
	require.NoError(t, err)
	assert.Equal(t, []byte{0x01}, b)
	b, err = fr.Next()
	require.NoError(t, err)
	assert.Len(t, b, 300)
	b, err = fr.Next()
	require.NoError(t, err)
	assert.Len(t, b, 5003)
	_, err = fr.Next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestFrameReaderLimits(t *testing.T) {
	// A declared length over the maximum is refused before any body is read.
	fr := NewFrameReader(io.MultiReader(bytes.NewReader([]byte{0x80, 0x80, 0x04}), failReader{}), 1024, 512)
	_, err := fr.Next()
	assert.ErrorIs(t, err, ErrFrameTooLarge)

	fr = NewFrameReader(bytes.NewReader([]byte{0x05, 0x01}), 1024, 512)
	_, err = fr.Next()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	fr = NewFrameReader(bytes.NewReader([]byte{0x00}), 1024, 512)
	_, err = fr.Next()
	assert.ErrorIs(t, err, ErrSyntax)

	fr = NewFrameReader(bytes.NewReader(bytes.Repeat([]byte{0xff}, 11)), 1024, 512)
	_, err = fr.Next()
	assert.ErrorIs(t, err, ErrSyntax)
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("body must not be read") }

func FuzzValidate(f *testing.F) {
	for _, v := range []any{1, "x", []any{1, "a", []byte{2}}, map[string]any{"k": []any{nil, true, 1.5}}} {
		b, _ := cbor.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte{0x9f, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Validate(b, DefaultLimits)
		r := NewReader(b)
		skipErr := r.Skip()
		if err == nil {
			if skipErr != nil || r.Len() != 0 {
				t.Fatalf("validated item does not skip cleanly: %v, %d left", skipErr, r.Len())
			}
			if werr := cbor.Wellformed(b); werr != nil {
				t.Fatalf("Validate accepted what the reference decoder rejects: %v", werr)
			}
		}
	})
}

func TestFrameReaderReady(t *testing.T) {
	frame := func(n int) []byte {
		buf := make([]byte, FramePrefix, FramePrefix+n)
		return SealFrame(append(buf, bytes.Repeat([]byte{0x01}, n)...))
	}
	two := append(frame(3), frame(200)...)
	// The reader gets the first frame and only part of the second.
	fr := NewFrameReader(io.MultiReader(bytes.NewReader(two[:10]), bytes.NewReader(two[10:])), 1024, 512)
	_, err := fr.Next()
	require.NoError(t, err)
	assert.False(t, fr.Ready(), "only part of the next frame is buffered")
	_, err = fr.Next()
	require.NoError(t, err)
	assert.False(t, fr.Ready())

	fr = NewFrameReader(bytes.NewReader(two), 1024, 512)
	_, err = fr.Next()
	require.NoError(t, err)
	assert.True(t, fr.Ready(), "the next frame is buffered whole")
}

// TestFrameReaderGrowsAsBytesArrive declares a 4 MiB frame and sends a few
// bytes: the reader must not have allocated the 4 MiB.
func TestFrameReaderGrowsAsBytesArrive(t *testing.T) {
	header := binary.AppendUvarint(nil, 4<<20)
	stream := append(header, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fr := NewFrameReader(bytes.NewReader(stream), 8<<20, 4096)
	_, err := fr.Next()
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "the buffer grew only as far as the bytes that came")
}

// TestFrameReaderGrowKeepsReadAhead starts a reader with a small buffer,
// lets it read ahead past the first frame, and grows it: the frames read
// ahead come out whole and in order, and small frames then fit the larger
// buffer.
func TestFrameReaderGrowKeepsReadAhead(t *testing.T) {
	frame := func(n int, fill byte) []byte {
		buf := make([]byte, FramePrefix, FramePrefix+n)
		return SealFrame(append(buf, bytes.Repeat([]byte{fill}, n)...))
	}
	var stream []byte
	stream = append(stream, frame(5, 1)...)
	stream = append(stream, frame(20, 2)...)
	stream = append(stream, frame(2000, 3)...)
	stream = append(stream, frame(3000, 4)...)
	fr := NewFrameReader(bytes.NewReader(stream), 1<<20, 16)
	b, err := fr.Next()
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{1}, 5), b)
	require.NotEmpty(t, fr.buffered(), "the reader has read ahead")
	fr.Grow(4096)
	assert.Equal(t, 4096, fr.size)
	for _, want := range []struct {
		n    int
		fill byte
	}{{20, 2}, {2000, 3}, {3000, 4}} {
		b, err := fr.Next()
		require.NoError(t, err)
		assert.Equal(t, bytes.Repeat([]byte{want.fill}, want.n), b)
	}
	_, err = fr.Next()
	assert.ErrorIs(t, err, io.EOF)

	// Growing to a size it already has changes nothing.
	fr = NewFrameReader(bytes.NewReader(stream), 1<<20, 4096)
	fr.Grow(1024)
	assert.Equal(t, 4096, fr.size)
}

// TestValidateBoundsItemsInAll: containers each within MaxItems but many
// of them together exceed MaxTotal (a body of empty arrays would make the
// decoder allocate dozens of bytes per byte received).
func TestValidateBoundsItemsInAll(t *testing.T) {
	lim := Limits{MaxDepth: 8, MaxItems: 100, MaxTotal: 1000}
	var b []byte
	b = AppendArray(b, 20)
	for range 20 {
		b = AppendArray(b, 50)
		for range 50 {
			b = AppendArray(b, 0)
		}
	}
	// 20 + 20×50 = 1020 items in all.
	err := Validate(b, lim)
	require.ErrorIs(t, err, ErrLimit)
	assert.Contains(t, err.Error(), "more than 1000 items in all")
	lim.MaxTotal = 1020
	assert.NoError(t, Validate(b, lim))
	lim.MaxTotal = 0
	assert.NoError(t, Validate(b, lim), "0: no bound")
}

// TestCheckDepthAgreesWithValidate: a sender's depth check refuses exactly
// what Validate refuses for nesting, for arrays, maps and tags.
func TestCheckDepthAgreesWithValidate(t *testing.T) {
	nest := func(head []byte, n int) []byte {
		b := bytes.Repeat(head, n)
		return append(b, 0x01)
	}
	for name, head := range map[string][]byte{"array": {0x81}, "map": {0xa1, 0x01}, "tag": {0xc6}} {
		for _, n := range []int{DefaultLimits.MaxDepth - 1, DefaultLimits.MaxDepth, DefaultLimits.MaxDepth + 1} {
			b := nest(head, n)
			want := Validate(b, DefaultLimits)
			got := CheckDepth(b, DefaultLimits.MaxDepth)
			assert.Equal(t, want == nil, got == nil, "%s nested %d: Validate %v, CheckDepth %v", name, n, want, got)
			if got != nil {
				assert.ErrorIs(t, got, ErrLimit)
			}
		}
	}
	assert.NoError(t, CheckDepth([]byte{0x65, 'h', 'e', 'l', 'l', 'o'}, 0), "a scalar has no depth")
	assert.ErrorIs(t, CheckDepth([]byte{0x82, 0x01}, 5), ErrSyntax)
}

// sealed returns a frame whose body is n bytes of fill.
func sealed(n int, fill byte) []byte {
	buf := make([]byte, FramePrefix, FramePrefix+n)
	return SealFrame(append(buf, bytes.Repeat([]byte{fill}, n)...))
}

// chunkReader hands out its bytes at most chunk at a time.
type chunkReader struct {
	b     []byte
	chunk int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.b[:min(len(c.b), c.chunk)])
	c.b = c.b[n:]
	return n, nil
}

// TestFrameReaderSizeClasses reads frames of every size class (a byte, a
// length prefix of one, two and three bytes, exactly the buffer, one over
// it, many times it) arriving in chunks of various sizes: each comes out
// whole and in order, the bodies larger than the buffer stay intact after
// later frames, and the reader holds only its small buffer once it has
// handed out everything it read.
func TestFrameReaderSizeClasses(t *testing.T) {
	const size = 4 * SmallBuffer
	sizes := []int{1, 100, 127, 128, 300, SmallBuffer - 3, SmallBuffer - 2, SmallBuffer, size - 2, size - 1, size, size + 1, 4 * size, 70000}
	var stream []byte
	for i, n := range sizes {
		stream = append(stream, sealed(n, byte(i+1))...)
	}
	for _, chunk := range []int{1, 7, 200, SmallBuffer, size, 1 << 20} {
		src := &chunkReader{b: stream, chunk: chunk}
		fr := NewFrameReader(src, 1<<20, size)
		var kept [][]byte
		for i, n := range sizes {
			b, err := fr.Next()
			require.NoError(t, err, "chunk %d, frame %d", chunk, i)
			require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, n), b, "chunk %d, frame of %d bytes", chunk, n)
			if n+binary.PutUvarint(make([]byte, 10), uint64(n)) > size {
				kept = append(kept, b) // larger than the buffer: the caller's to keep
			}
		}
		_, err := fr.Next()
		require.ErrorIs(t, err, io.EOF)
		assert.Same(t, fr.small, fr.buf, "chunk %d: a pooled buffer is held with nothing buffered", chunk)
		for _, b := range kept {
			assert.Equal(t, bytes.Repeat(b[:1], len(b)), b, "chunk %d: a large body was overwritten", chunk)
		}
	}
}

// TestFrameReaderReleasesBufferWhenIdle: frames that arrive together, more
// than the small buffer holds, are read through a pooled buffer; once they
// are all handed out the reader waits with its small buffer only.
func TestFrameReaderReleasesBufferWhenIdle(t *testing.T) {
	pr, pw := io.Pipe()
	fr := NewFrameReader(pr, 1<<20, 1024)
	got := make(chan []byte, 10)
	go func() {
		for {
			b, err := fr.Next()
			if err != nil {
				close(got)
				return
			}
			got <- bytes.Clone(b)
		}
	}()
	_, err := pw.Write(append(sealed(10, 1), sealed(900, 2)...))
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{1}, 10), <-got)
	assert.Equal(t, bytes.Repeat([]byte{2}, 900), <-got)
	_, err = pw.Write(sealed(5, 3))
	require.NoError(t, err)
	assert.Equal(t, bytes.Repeat([]byte{3}, 5), <-got)
	pw.Close()
	_, open := <-got
	assert.False(t, open)
	assert.Same(t, fr.small, fr.buf)
}

// TestCheckSent: CheckSent refuses a text string that is not valid UTF-8,
// at any depth, and nesting beyond its limit, and passes byte strings that
// are not UTF-8.
func TestCheckSent(t *testing.T) {
	ok := AppendBytes(AppendText(AppendArray(nil, 2), "café"), []byte{0xff, 0xe9})
	if err := CheckSent(ok, 2); err != nil {
		t.Fatalf("CheckSent(%x) = %v", ok, err)
	}
	bad := AppendText(AppendArray(AppendArray(nil, 1), 1), "caf\xe9")
	if err := CheckSent(bad, 3); !errors.Is(err, ErrInvalidUTF8) {
		t.Fatalf("CheckSent(%x) = %v, want ErrInvalidUTF8", bad, err)
	}
	if err := CheckSent(bad, 1); !errors.Is(err, ErrLimit) {
		t.Fatalf("CheckSent(%x, 1) = %v, want ErrLimit", bad, err)
	}
}

// TestValidateTagged: ValidateTagged validates as Validate does and reports
// whether an item tagged with the given number appears anywhere, as
// CollectTagged would find it.
func TestValidateTagged(t *testing.T) {
	tagged := func(tag uint64, in []byte) []byte { return append(AppendTag(nil, tag), in...) }
	inner := AppendArray(nil, 2)
	inner = append(inner, tagged(59000, AppendUint(nil, 7))...)
	inner = AppendText(inner, "x")
	for name, c := range map[string]struct {
		in   []byte
		want bool
	}{
		"none":         {AppendText(AppendArray(nil, 1), "a"), false},
		"top":          {tagged(59000, AppendUint(nil, 1)), true},
		"nested":       {append(AppendArray(nil, 1), inner...), true},
		"other tag":    {tagged(59001, AppendUint(nil, 1)), false},
		"inside bytes": {AppendBytes(nil, tagged(59000, AppendUint(nil, 1))), false},
		"inside a map": {append(append(AppendMap(nil, 1), AppendUint(nil, 1)...), tagged(59000, AppendUint(nil, 2))...), true},
	} {
		t.Run(name, func(t *testing.T) {
			found, err := ValidateTagged(c.in, DefaultLimits, 59000)
			require.NoError(t, err)
			assert.Equal(t, c.want, found)
			n := 0
			require.NoError(t, CollectTagged(c.in, 59000, func(uint64) { n++ }))
			assert.Equal(t, c.want, n > 0, "as CollectTagged finds them")
		})
	}
	_, err := ValidateTagged([]byte{0x01, 0x02}, DefaultLimits, 59000)
	require.ErrorIs(t, err, ErrSyntax, "trailing data")
}

// TestReaderAdvance: Advance consumes what the caller read from Rest, and
// refuses to pass the end or stand still.
func TestReaderAdvance(t *testing.T) {
	r := NewReader([]byte{0x01, 0x02, 0x03})
	require.NoError(t, r.Advance(2))
	assert.Equal(t, []byte{0x03}, r.Rest())
	require.ErrorIs(t, r.Advance(2), ErrSyntax)
	require.ErrorIs(t, r.Advance(0), ErrSyntax)
	assert.Equal(t, 1, r.Len(), "a refused advance consumes nothing")
}
