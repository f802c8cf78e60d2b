package cborx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrSyntax is wrapped by every error that reports malformed CBOR.
var ErrSyntax = errors.New("malformed CBOR")

// ErrLimit is wrapped by every error that reports CBOR exceeding a limit.
var ErrLimit = errors.New("CBOR limit exceeded")

// Trusted seals the broker's seams for bytes this module's own engines
// encoded or validated (broker/seams.go): only packages of the module can
// name it, so no user type implements such a seam by accident and has its
// bytes sent unchecked.
type Trusted struct{}

// ErrInvalidUTF8 is wrapped by CheckSent's error for a text string that is
// not valid UTF-8.
var ErrInvalidUTF8 = errors.New("text string is not valid UTF-8")

func syntaxErr(off int, format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, off, fmt.Sprintf(format, args...))
}

// Reader reads CBOR items from a byte slice. Every method checks bounds; none
// panics on hostile input. Byte and text strings are returned as views into
// the slice: copy them if they must outlive it.
type Reader struct {
	b   []byte
	off int
}

// NewReader returns a Reader over b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Reset points r at b.
func (r *Reader) Reset(b []byte) { r.b, r.off = b, 0 }

// Offset reports how many bytes have been consumed.
func (r *Reader) Offset() int { return r.off }

// Len reports how many bytes remain.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Bytes returns b[from:Offset()], the bytes consumed since from.
func (r *Reader) Bytes(from int) []byte { return r.b[from:r.off] }

// Rest returns the unread bytes.
func (r *Reader) Rest() []byte { return r.b[r.off:] }

// Advance consumes n bytes that the caller read from Rest itself: an item
// it decoded on its own. It fails, consuming nothing, when fewer than n
// remain or n is not positive.
func (r *Reader) Advance(n int) error {
	if n <= 0 || n > r.Len() {
		return syntaxErr(r.off, "cannot advance %d bytes of %d", n, r.Len())
	}
	r.off += n
	return nil
}

// Head is a decoded item head.
type Head struct {
	Major byte
	AI    byte   // additional information (low five bits of the first byte)
	Arg   uint64 // argument; for floats, the raw bits
}

// PeekHead decodes the next head without consuming it.
func (r *Reader) PeekHead() (Head, error) {
	off := r.off
	h, err := r.ReadHead()
	r.off = off
	return h, err
}

// ReadHead decodes and consumes the next head. Indefinite lengths and the
// reserved additional-information values 28–30 are rejected.
func (r *Reader) ReadHead() (Head, error) {
	if r.off >= len(r.b) {
		return Head{}, syntaxErr(r.off, "unexpected end of data")
	}
	ib := r.b[r.off]
	h := Head{Major: ib >> 5, AI: ib & 31}
	n := 0
	switch {
	case h.AI < 24:
		h.Arg = uint64(h.AI)
	case h.AI == 24:
		n = 1
	case h.AI == 25:
		n = 2
	case h.AI == 26:
		n = 4
	case h.AI == 27:
		n = 8
	case h.AI == 31:
		return Head{}, syntaxErr(r.off, "indefinite-length items are not allowed")
	default:
		return Head{}, syntaxErr(r.off, "reserved additional information %d", h.AI)
	}
	if len(r.b)-r.off-1 < n {
		return Head{}, syntaxErr(r.off, "unexpected end of data in head")
	}
	p := r.b[r.off+1:]
	switch n {
	case 1:
		h.Arg = uint64(p[0])
		if h.Major == MajorSimple && h.Arg < 32 {
			return Head{}, syntaxErr(r.off, "invalid two-byte simple value %d", h.Arg)
		}
	case 2:
		h.Arg = uint64(binary.BigEndian.Uint16(p))
	case 4:
		h.Arg = uint64(binary.BigEndian.Uint32(p))
	case 8:
		h.Arg = binary.BigEndian.Uint64(p)
	}
	r.off += 1 + n
	return h, nil
}

// TypeName names a head's type for error messages.
func (h Head) TypeName() string {
	switch h.Major {
	case MajorUint:
		return "unsigned integer"
	case MajorNeg:
		return "negative integer"
	case MajorBytes:
		return "byte string"
	case MajorText:
		return "text string"
	case MajorArray:
		return "array"
	case MajorMap:
		return "map"
	case MajorTag:
		return fmt.Sprintf("tag %d", h.Arg)
	}
	switch h.AI {
	case SimpleFalse, SimpleTrue:
		return "boolean"
	case SimpleNull:
		return "null"
	case SimpleUndefined:
		return "undefined"
	case SimpleFloat16, SimpleFloat32, SimpleFloat64:
		return "float"
	}
	return "simple value"
}

// IsNull reports whether h is null or undefined.
func (h Head) IsNull() bool {
	return h.Major == MajorSimple && (h.AI == SimpleNull || h.AI == SimpleUndefined)
}

// Float returns the value of a float head.
func (h Head) Float() (float64, bool) {
	if h.Major != MajorSimple {
		return 0, false
	}
	switch h.AI {
	case SimpleFloat16:
		return float16(uint16(h.Arg)), true
	case SimpleFloat32:
		return float64(math.Float32frombits(uint32(h.Arg))), true
	case SimpleFloat64:
		return math.Float64frombits(h.Arg), true
	}
	return 0, false
}

func float16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	frac := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 31:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(frac+1024, exp-25)
}

// ReadUint reads an unsigned integer.
func (r *Reader) ReadUint() (uint64, error) {
	h, err := r.readHeadOf(MajorUint)
	return h.Arg, err
}

// ReadInt reads a signed or unsigned integer that fits in an int64.
func (r *Reader) ReadInt() (int64, error) {
	off := r.off
	h, err := r.ReadHead()
	if err != nil {
		return 0, err
	}
	switch h.Major {
	case MajorUint:
		if h.Arg > math.MaxInt64 {
			return 0, syntaxErr(off, "integer %d overflows int64", h.Arg)
		}
		return int64(h.Arg), nil
	case MajorNeg:
		if h.Arg > math.MaxInt64 {
			return 0, syntaxErr(off, "negative integer overflows int64")
		}
		return -1 - int64(h.Arg), nil
	}
	r.off = off
	return 0, syntaxErr(off, "expected integer, found %s", h.TypeName())
}

// ReadText reads a text string and returns a view of its bytes. UTF-8
// validity is the caller's concern (Validate checks it for whole frames).
func (r *Reader) ReadText() ([]byte, error) { return r.readString(MajorText) }

// ReadBytes reads a byte string and returns a view of it.
func (r *Reader) ReadBytes() ([]byte, error) { return r.readString(MajorBytes) }

// readString reads a string of major type m and returns a view of it.
func (r *Reader) readString(m byte) ([]byte, error) {
	h, err := r.readHeadOf(m)
	if err != nil {
		return nil, err
	}
	return r.take(h.Arg)
}

// readHeadOf reads the next head, which must be of major type m: the typed
// readers share it so that a mismatch leaves r where it was and says what
// was expected and what was found.
func (r *Reader) readHeadOf(m byte) (Head, error) {
	off := r.off
	h, err := r.ReadHead()
	if err == nil && h.Major != m {
		r.off = off
		return Head{}, mismatch(off, m, h)
	}
	return h, err
}

// mismatch is the error for a head h, at off, where one of major type m
// was expected; kept apart so that readHeadOf stays small enough to inline.
func mismatch(off int, m byte, h Head) error {
	return syntaxErr(off, "expected %s, found %s", Head{Major: m}.TypeName(), h.TypeName())
}

// take consumes the next n bytes, the body of a string, and returns a view
// of them.
func (r *Reader) take(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)-r.off) {
		return nil, syntaxErr(r.off, "string of %d bytes runs past the end of data", n)
	}
	p := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return p, nil
}

// ReadArray reads an array head and returns its length.
func (r *Reader) ReadArray() (int, error) {
	off := r.off
	h, err := r.readHeadOf(MajorArray)
	if err != nil {
		return 0, err
	}
	if h.Arg > uint64(r.Len()) { // every item takes at least one byte
		return 0, r.cannotFit(h, off)
	}
	return int(h.Arg), nil
}

// children returns how many items follow the head h, which began at off:
// one for a tag, the items of an array, both halves of every pair of a map,
// none for anything else. For arrays and maps it first checks that the
// items could fit in what remains, since every item takes at least one
// byte: a hostile length then fails before anything is allocated for it.
func (r *Reader) children(h Head, off int) (uint64, error) {
	switch h.Major {
	case MajorTag:
		return 1, nil
	case MajorArray:
		if h.Arg > uint64(r.Len()) {
			return 0, r.cannotFit(h, off)
		}
		return h.Arg, nil
	case MajorMap:
		if h.Arg > uint64(r.Len())/2 { // 2*h.Arg > r.Len(), without overflow
			return 0, r.cannotFit(h, off)
		}
		return 2 * h.Arg, nil
	}
	return 0, nil
}

// nextHead reads the next item's head, and a string's body with it: what
// is left to the caller is the items inside, if any (see children). It
// also returns where the head began.
func (r *Reader) nextHead() (h Head, off int, err error) {
	off = r.off
	h, err = r.ReadHead()
	if err == nil && (h.Major == MajorBytes || h.Major == MajorText) {
		_, err = r.take(h.Arg)
	}
	return h, off, err
}

// nests reports whether h is an array, map or tag: the items that count
// toward nesting.
func (h Head) nests() bool {
	return h.Major == MajorArray || h.Major == MajorMap || h.Major == MajorTag
}

// cannotFit is the error for a container head h, at off, that claims more
// items than the bytes left could hold.
func (r *Reader) cannotFit(h Head, off int) error {
	return syntaxErr(off, "%s of %d items cannot fit in %d bytes", h.TypeName(), h.Arg, r.Len())
}

// ReadNull consumes a null or undefined if one is next and reports whether it did.
func (r *Reader) ReadNull() bool {
	if r.off < len(r.b) && (r.b[r.off] == MajorSimple<<5|SimpleNull || r.b[r.off] == MajorSimple<<5|SimpleUndefined) {
		r.off++
		return true
	}
	return false
}

// CollectTagged calls found for every unsigned integer tagged with tag in
// the well-formed item b (validate it first), at any depth.
func CollectTagged(b []byte, tag uint64, found func(uint64)) error {
	r := NewReader(b)
	return r.walk(tag, found, 0)
}

// Skip consumes one whole item. It assumes nothing about the input and
// checks bounds, but it does not enforce limits: call Validate first on data
// from a peer.
func (r *Reader) Skip() error {
	return r.walk(0, nil, 0)
}

const skipMaxDepth = 256

// walk consumes one item; with found set, it reports the unsigned integers
// tagged with tag inside it.
func (r *Reader) walk(tag uint64, found func(uint64), depth int) error {
	if depth > skipMaxDepth {
		return syntaxErr(r.off, "nesting too deep")
	}
	h, off, err := r.nextHead()
	if err != nil {
		return err
	}
	if h.Major == MajorTag && found != nil && h.Arg == tag && r.reportTagged(found) {
		return nil
	}
	n, err := r.children(h, off)
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		if err := r.walk(tag, found, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// reportTagged consumes the unsigned integer that follows a matching tag
// head and reports it to found. When the tag holds anything else it
// consumes nothing and returns false, and walk descends into the content.
func (r *Reader) reportTagged(found func(uint64)) bool {
	next, err := r.PeekHead()
	if err != nil || next.Major != MajorUint {
		return false
	}
	_, _ = r.ReadHead() // peeked above: cannot fail
	found(next.Arg)
	return true
}
