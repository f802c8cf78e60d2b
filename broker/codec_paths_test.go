package broker

import (
	"bytes"
	"math"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/internal/cborx"
)

// The codec lays structs out twice: fxamacker encodes and decodes plain
// types, and the codec's own walker (typeinfo.go, encode.go, decode.go)
// those that carry references. FuzzCodecPathsAgree checks that the two
// agree, byte for byte and value for value, on a family of struct shapes.
//
// Each shape is generic in the type of one field, M, which is always nil
// and omitted (or null in a toarray struct). With M = *Ref every struct of
// the family holds a reference type, so the walker lays out all of them,
// at every depth; with M = *fzMark none does, so fxamacker encodes the
// whole value. Both are the production paths, unchanged: the test does not
// reach into the codec to pick one.

// fzMark is the plain stand-in for *Ref in the shapes fxamacker encodes.
type fzMark struct{}

type (
	fzWalked = FzShape[*Ref]
	fzPlain  = FzShape[*fzMark]
)

// FzLeaf has scalars of each kind the codec encodes itself, with and
// without omitempty, named by cbor tag, json tag or Go name.
type FzLeaf[M any] struct {
	I   int     `cbor:"i,omitempty"`
	U   uint16  `cbor:"u"`
	F   float64 `cbor:"f,omitempty"`
	F32 float32
	S   string `json:"s,omitempty"`
	B   []byte `cbor:"b,omitempty"`
	Ok  bool   `cbor:"ok,omitempty"`
	M   M      `cbor:"m,omitempty"`
}

// FzPoint is a toarray struct, with an omitempty field.
type FzPoint[M any] struct {
	_ struct{} `cbor:",toarray"`
	X int
	Y *int
	L []string `cbor:",omitempty"`
	M M
}

// FzKeyed has integer keys, a negative one included.
type FzKeyed[M any] struct {
	A int        `cbor:"1,keyasint"`
	B string     `cbor:"-2,keyasint,omitempty"`
	C *FzLeaf[M] `cbor:"3,keyasint,omitempty"`
	M M          `cbor:"4,keyasint,omitempty"`
}

// FzBase is embedded by value.
type FzBase[M any] struct {
	N  int    `cbor:"n"`
	Up string `cbor:"up,omitempty"`
	M  M      `cbor:"m,omitempty"`
}

// FzExtra is embedded by pointer; its N is as deep as FzBase's and as
// tagged, so the two cancel out and neither is encoded.
type FzExtra[M any] struct {
	N   int    `cbor:"n"`
	P   string `cbor:"p,omitempty"`
	Tag int
	M   M `cbor:"m,omitempty"`
}

// FzOmit has only omitempty fields: zero, it encodes as an empty map.
type FzOmit[M any] struct {
	A int    `cbor:"a,omitempty"`
	S string `cbor:"s,omitempty"`
	M M      `cbor:"m,omitempty"`
}

// fzHidden is embedded by value though unexported: its exported fields
// are promoted all the same.
type fzHidden[M any] struct {
	H    []int  `cbor:"h"`
	Hs   string `cbor:"hs,omitempty"`
	Name string // shallower Name in FzShape wins
	M    M      `cbor:"m,omitempty"`
}

// fzHiddenPtr is embedded by pointer though unexported: the fuzzer
// cannot set it, so it stays nil and its fields are left out.
type fzHiddenPtr[M any] struct {
	Q int `cbor:"q,omitempty"`
	M M   `cbor:"m,omitempty"`
}

// FzShape puts the others together: nested, behind pointers, in slices,
// arrays and maps, embedded by value and by pointer, with and without
// omitempty.
type FzShape[M any] struct {
	FzBase[M]
	*FzExtra[M]
	fzHidden[M]
	*fzHiddenPtr[M]
	Named   FzBase[M]             `cbor:"named"` // embedded, but named: not flattened
	Name    string                `cbor:"name"`
	Leaf    FzLeaf[M]             `cbor:"leaf"`
	PLeaf   *FzLeaf[M]            `cbor:"pleaf,omitempty"`
	Leaves  []FzLeaf[M]           `cbor:"leaves,omitempty"`
	Points  []*FzPoint[M]         `cbor:"points"`
	Pair    [2]FzPoint[M]         `cbor:"pair"`
	ByName  map[string]FzKeyed[M] `cbor:"byname,omitempty"`
	ByNum   map[int]*FzOmit[M]    `cbor:"bynum"`
	Keyed   FzKeyed[M]            `cbor:"keyed"`
	Omit    FzOmit[M]             `cbor:"omit,omitempty"`
	POmit   *FzOmit[M]            `cbor:"pomit,omitempty"`
	Ints    []int                 `cbor:"ints"`
	Nested  [][]FzOmit[M]         `cbor:"nested,omitempty"`
	Skipped int                   `cbor:"-"`
	M       M                     `cbor:"m,omitempty"`
}

// FuzzCodecPathsAgree builds the same value of FzShape from data for both
// paths, checks that they encode it to the same bytes (up to the order of
// map pairs, which Go's maps leave open), and decodes each encoding back
// through both paths to the same value.
func FuzzCodecPathsAgree(f *testing.F) {
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Add(bytes.Repeat([]byte{1}, 256))
	f.Add([]byte("\x02\x01\x00\x03\x05hello\x00\x00\x00\x07\x02\x02\x00\x01\x01\x01\x01\x02\x00\x03"))
	seq := make([]byte, 512)
	for i := range seq {
		seq[i] = byte(i * 7)
	}
	f.Add(seq)
	f.Fuzz(func(t *testing.T, data []byte) {
		var w fzWalked
		var p fzPlain
		fzFill(reflect.ValueOf(&w).Elem(), &fzSource{data: data}, 0)
		fzFill(reflect.ValueOf(&p).Elem(), &fzSource{data: data}, 0)
		require := func(ok bool, format string, args ...any) {
			t.Helper()
			if !ok {
				t.Fatalf(format, args...)
			}
		}
		require(infoOf(reflect.TypeFor[fzWalked]()).kind == kStruct && infoOf(reflect.TypeFor[fzPlain]()).kind == kPure,
			"the shapes no longer take the two paths")

		wb, werr := Marshal(w)
		pb, perr := Marshal(p)
		require((werr == nil) == (perr == nil), "encoding: walker %v, fxamacker %v", werr, perr)
		if werr != nil {
			return
		}
		require(bytes.Equal(fzCanonical(t, wb), fzCanonical(t, pb)),
			"the paths encode differently:\nwalker    %x\nfxamacker %x", wb, pb)

		for _, enc := range [][]byte{wb, pb} {
			var w2 fzWalked
			var p2 fzPlain
			werr, perr := Unmarshal(enc, &w2), Unmarshal(enc, &p2)
			require((werr == nil) == (perr == nil), "decoding %x: walker %v, fxamacker %v", enc, werr, perr)
			if werr != nil {
				continue
			}
			require(fzSame(reflect.ValueOf(w2), reflect.ValueOf(p2)),
				"the paths decode %x differently:\nwalker    %+v\nfxamacker %+v", enc, w2, p2)
		}
	})
}

// fzSource hands out the fuzzer's bytes as choices; once they run out,
// every choice is zero.
type fzSource struct{ data []byte }

func (s *fzSource) byte() byte {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[0]
	s.data = s.data[1:]
	return b
}

func (s *fzSource) uint64(n int) uint64 {
	var x uint64
	for i := 0; i < n; i++ {
		x = x<<8 | uint64(s.byte())
	}
	return x
}

// fzAlphabet makes strings and map keys short, valid UTF-8 and likely to
// collide.
const fzAlphabet = "abNnm1é"

func (s *fzSource) string() string {
	runes := []rune(fzAlphabet)
	n := int(s.byte() % 4)
	var out []rune
	for i := 0; i < n; i++ {
		out = append(out, runes[int(s.byte())%len(runes)])
	}
	return string(out)
}

// fzFill sets v from s. Fields named M are left nil (they only choose the
// path); pointers, slices and maps come nil, empty or filled.
func fzFill(v reflect.Value, s *fzSource, depth int) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(s.byte()&1 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fzFillInt(v, s)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(s.uint64(int(s.byte() % 9)))
	case reflect.Float32, reflect.Float64:
		fzFillFloat(v, s)
	case reflect.String:
		v.SetString(s.string())
	case reflect.Pointer:
		if s.byte()%3 != 0 && depth < 4 && v.CanSet() { // an unexported embedded pointer stays nil
			v.Set(reflect.New(v.Type().Elem()))
			fzFill(v.Elem(), s, depth+1)
		}
	case reflect.Slice, reflect.Map:
		fzFillContainer(v, s, depth)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fzFill(v.Index(i), s, depth+1)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(int64(s.uint64(5)), int64(s.uint64(4)%1e9)).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); (f.IsExported() || f.Anonymous) && f.Name != "M" {
				fzFill(v.Field(i), s, depth+1)
			}
		}
	}
}

// fzFillInt picks small and large, positive and negative integers.
func fzFillInt(v reflect.Value, s *fzSource) {
	x := int64(s.uint64(int(s.byte() % 9)))
	if s.byte()&1 == 1 {
		x = -x
	}
	if v.OverflowInt(x) {
		x = x >> (64 - v.Type().Bits())
	}
	v.SetInt(x)
}

// fzFillFloat picks any bit pattern: zeros of both signs, infinities and
// NaNs included.
func fzFillFloat(v reflect.Value, s *fzSource) {
	if v.Kind() == reflect.Float32 {
		v.SetFloat(float64(math.Float32frombits(uint32(s.uint64(4)))))
		return
	}
	v.SetFloat(math.Float64frombits(s.uint64(8)))
}

// fzFillContainer makes a slice or map nil, empty, or up to three long.
func fzFillContainer(v reflect.Value, s *fzSource, depth int) {
	choice := s.byte() % 5
	if choice == 0 || depth >= 4 {
		return // nil
	}
	n := int(choice - 1)
	if v.Kind() == reflect.Slice {
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := 0; i < n; i++ {
			fzFill(v.Index(i), s, depth+1)
		}
		return
	}
	v.Set(reflect.MakeMap(v.Type()))
	for i := 0; i < n; i++ {
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fzFill(k, s, depth+1)
		fzFill(e, s, depth+1)
		v.SetMapIndex(k, e)
	}
}

// fzSame compares two values of the same shape but not the same type (one
// per path): field by field, element by element, floats by bits but any
// NaN equal to any other.
func fzSame(a, b reflect.Value) bool {
	if a.Kind() != b.Kind() {
		return false
	}
	switch a.Kind() {
	case reflect.Pointer:
		return a.IsNil() == b.IsNil() && (a.IsNil() || fzSame(a.Elem(), b.Elem()))
	case reflect.Slice:
		if a.IsNil() != b.IsNil() {
			return false
		}
		fallthrough
	case reflect.Array:
		return a.Len() == b.Len() && fzSameElements(a, b)
	case reflect.Map:
		return a.IsNil() == b.IsNil() && a.Len() == b.Len() && fzSameEntries(a, b)
	case reflect.Struct:
		if a.Type() == reflect.TypeFor[time.Time]() {
			return a.Interface().(time.Time).Equal(b.Interface().(time.Time))
		}
		for i := 0; i < a.NumField(); i++ {
			if f := a.Type().Field(i); (f.IsExported() || f.Anonymous) && !fzSame(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y))
	}
	return a.Interface() == b.Interface()
}

func fzSameElements(a, b reflect.Value) bool {
	for i := 0; i < a.Len(); i++ {
		if !fzSame(a.Index(i), b.Index(i)) {
			return false
		}
	}
	return true
}

func fzSameEntries(a, b reflect.Value) bool {
	it := a.MapRange()
	for it.Next() {
		bv := b.MapIndex(it.Key()) // the shapes' map keys are plain types, the same for both
		if !bv.IsValid() || !fzSame(it.Value(), bv) {
			return false
		}
	}
	return true
}

// fzCanonical re-encodes one CBOR item with every map's pairs sorted by
// their encoded keys.
func fzCanonical(t *testing.T, b []byte) []byte {
	t.Helper()
	r := cborx.NewReader(b)
	out, err := fzAppendCanonical(nil, &r)
	if err != nil || r.Len() != 0 {
		t.Fatalf("canonical form of %x: %v (%d bytes left)", b, err, r.Len())
	}
	return out
}

func fzAppendCanonical(out []byte, r *cborx.Reader) ([]byte, error) {
	start := r.Offset()
	h, err := r.PeekHead()
	if err != nil {
		return nil, err
	}
	switch h.Major {
	case cborx.MajorArray, cborx.MajorTag, cborx.MajorMap:
	default:
		if err := r.Skip(); err != nil {
			return nil, err
		}
		return append(out, r.Bytes(start)...), nil
	}
	if _, err := r.ReadHead(); err != nil {
		return nil, err
	}
	out = append(out, r.Bytes(start)...)
	switch h.Major {
	case cborx.MajorTag:
		return fzAppendCanonical(out, r)
	case cborx.MajorArray:
		for i := uint64(0); i < h.Arg; i++ {
			if out, err = fzAppendCanonical(out, r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	pairs := make([][2][]byte, h.Arg)
	for i := range pairs {
		for j := range pairs[i] {
			if pairs[i][j], err = fzAppendCanonical(nil, r); err != nil {
				return nil, err
			}
		}
	}
	slices.SortFunc(pairs, func(x, y [2][]byte) int { return bytes.Compare(x[0], y[0]) })
	for _, p := range pairs {
		out = append(append(out, p[0]...), p[1]...)
	}
	return out, nil
}

// fzOne has one omitempty field of type T; M picks the path as in FzShape.
type fzOne[T, M any] struct {
	A T `cbor:"a,omitempty"`
	M M `cbor:"m,omitempty"`
}

// fzOneAgree checks that an fzOne holding a encodes alike on both paths and
// decodes back on the walker's.
func fzOneAgree[T any](t *testing.T, a T) {
	t.Helper()
	wb, werr := Marshal(fzOne[T, *Ref]{A: a})
	pb, perr := Marshal(fzOne[T, *fzMark]{A: a})
	if werr != nil || perr != nil || !bytes.Equal(wb, pb) {
		t.Errorf("%T %#v: walker %x (%v), fxamacker %x (%v)", a, a, wb, werr, pb, perr)
		return
	}
	var back fzOne[T, *Ref]
	if err := Unmarshal(wb, &back); err != nil {
		t.Errorf("%T %#v: decoding %x: %v", a, a, wb, err)
	}
}

// TestOmitEmptyFxamackerTypes: the walker decides whether an omitempty
// field of fxamacker's own types is empty as fxamacker does, by the type
// before its methods. cbor.RawMessage, cbor.ByteString and
// cbor.SimpleValue marshal themselves, and the walker took them for never
// empty: it wrote an empty one where fxamacker leaves it out, and a zero
// SimpleValue as simple value 0, which no receiver accepts.
func TestOmitEmptyFxamackerTypes(t *testing.T) {
	fzOneAgree(t, cbor.RawMessage(nil))
	fzOneAgree(t, cbor.RawMessage{})
	fzOneAgree(t, cbor.RawMessage{0x01})
	fzOneAgree(t, cbor.ByteString(""))
	fzOneAgree(t, cbor.ByteString("x"))
	fzOneAgree(t, cbor.SimpleValue(0))
	fzOneAgree(t, cbor.Tag{})
	fzOneAgree(t, cbor.Tag{Number: 1, Content: 2})
	fzOneAgree(t, time.Time{})
	fzOneAgree(t, time.Unix(1, 2).In(time.FixedZone("odd", 30)))
	fzOneAgree(t, big.Int{})
	fzOneAgree(t, [0]int{})
	fzOneAgree(t, [2]int{})
	fzOneAgree(t, struct{}{})
	fzOneAgree(t, math.Copysign(0, -1))
	fzOneAgree(t, float32(math.NaN()))
}
