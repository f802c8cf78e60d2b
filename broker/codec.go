package broker

import (
	"errors"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/internal/cborx"
)

// maxValueDepth bounds the Go values the encoder follows into one another,
// pointers and interfaces included, so that a cyclic value fails cleanly.
// It is not the wire's limit: the encoder counts CBOR levels separately
// (encoder.level) against decodeLimits.MaxDepth, exactly as the receiver's
// Validate will, and pointers and interfaces add no level there. It allows
// a few Go values per CBOR level ([]any takes two).
const maxValueDepth = 8 * 32

// The CBOR level at which a message's values start (the body is level 1):
// a call's arguments are elements of the argument array inside the call's
// array, a result an element of the Return's array. A value's own nesting
// may use the levels from there down to decodeLimits.MaxDepth.
const (
	callArgLevel = 3 // [3, id, target, method, timeout, [args...]]
	resultLevel  = 2 // [4, id, value]
)

var decodeLimits = cborx.DefaultLimits

// fxEnc and fxDec are fxamacker's modes for plain data. Time keeps
// nanoseconds (RFC 3339 text under tag 0); NaN and the infinities keep
// their width and bits, as every other float does and as the codec's own
// encoder writes them (docs/protocol.md: floats are sent as float64, or
// float32 for single-precision values); decoding refuses duplicate map
// keys, indefinite lengths and invalid UTF-8, and applies the same limits
// as cborx.Validate.
var (
	fxEnc cbor.UserBufferEncMode
	fxDec cbor.DecMode
)

func init() {
	var err error
	fxEnc, err = cbor.EncOptions{
		Time:        cbor.TimeRFC3339Nano,
		TimeTag:     cbor.EncTagRequired,
		IndefLength: cbor.IndefLengthForbidden,
		NaNConvert:  cbor.NaNConvertNone,
		InfConvert:  cbor.InfConvertNone,
	}.UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	fxDec, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		IndefLength:      cbor.IndefLengthForbidden,
		MaxNestedLevels:  decodeLimits.MaxDepth,
		MaxArrayElements: decodeLimits.MaxItems,
		MaxMapPairs:      decodeLimits.MaxItems,
		TagsMd:           cbor.TagsAllowed,
		UTF8:             cbor.UTF8RejectInvalid,
		IntDec:           cbor.IntDecConvertSignedOrFail,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as Tether's CBOR, the way it would travel in a call,
// outside any connection: plain data and Copyables. A reference (or a
// Cacheable) in v is an error, since references only exist on a connection.
// The cache package uses it to encode a model's entries once for every
// mirror.
func Marshal(v any) ([]byte, error) {
	e := getEncoder(nil)
	defer putEncoder(e)
	if err := e.any(v); err != nil {
		return nil, err
	}
	return append([]byte(nil), e.buf[cborx.FramePrefix:]...), nil
}

// Unmarshal decodes data, one CBOR item as Marshal makes it, into v, a
// non-nil pointer, with the rules a call's arguments are decoded with. The
// item is checked against the limits a peer's frames are checked against;
// a reference in it is an error.
func Unmarshal(data []byte, v any) error {
	if v == nil {
		return errors.New("tether: Unmarshal into nil")
	}
	if err := checkReply(v); err != nil {
		return err
	}
	if err := cborx.Validate(data, decodeLimits); err != nil {
		return err
	}
	d := decoder{r: cborx.NewReader(data)}
	if err := d.reply(v); err != nil {
		return err
	}
	if d.r.Len() != 0 {
		return errors.New("tether: trailing data after the CBOR item")
	}
	return nil
}

// UnmarshalRaw decodes data, one CBOR item as Marshal makes it, the way a
// destination of type any receives it, except that every Copyable becomes a
// *RawCopyable, registered here or not. It is for programs that show values
// without knowing their types.
func UnmarshalRaw(data []byte) (any, error) {
	if err := cborx.Validate(data, decodeLimits); err != nil {
		return nil, err
	}
	d := decoder{r: cborx.NewReader(data), opaque: true}
	v, err := d.generic()
	if err != nil {
		return nil, err
	}
	if d.r.Len() != 0 {
		return nil, errors.New("tether: trailing data after the CBOR item")
	}
	return v, nil
}
