package cache

import (
	"math"
	"unicode/utf8"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/cborx"
)

// decodeFast decodes raw into the value v points to without reflection
// when v is a *int, *int64 or *string and raw is exactly one plain item of
// that kind which broker.Unmarshal would decode to the same value: an
// integer that fits, a definite-length text string of valid UTF-8. It
// reports false, leaving *v alone, for anything else, which then goes
// through broker.Unmarshal (and its errors). A mirror decodes every key and
// value it applies, and most models are keyed by strings or integers.
func decodeFast(raw []byte, v any) bool {
	switch p := v.(type) {
	case *int:
		n, ok := fastInt(raw)
		if ok {
			*p = int(n)
		}
		return ok
	case *int64:
		n, ok := fastInt(raw)
		if ok {
			*p = n
		}
		return ok
	case *string:
		s, ok := fastText(raw)
		if ok {
			*p = s
		}
		return ok
	}
	return false
}

// fastInt reads raw as one integer item that fits an int64 (and an int:
// the platforms Tether builds for have 64-bit ints).
func fastInt(raw []byte) (int64, bool) {
	r := cborx.NewReader(raw)
	h, err := r.ReadHead()
	if err != nil || r.Len() != 0 || h.Arg > math.MaxInt64 || math.MaxInt != math.MaxInt64 {
		return 0, false
	}
	switch h.Major {
	case cborx.MajorUint:
		return int64(h.Arg), true
	case cborx.MajorNeg:
		return -1 - int64(h.Arg), true
	}
	return 0, false
}

// fastText reads raw as one text string of valid UTF-8.
func fastText(raw []byte) (string, bool) {
	r := cborx.NewReader(raw)
	b, err := r.ReadText()
	if err != nil || r.Len() != 0 || !utf8.Valid(b) {
		return "", false
	}
	return string(b), true
}

// marshalEntry encodes a model's key or value: ints, int64s and strings
// directly (the bytes broker.Marshal makes for them, checked by a test),
// anything else through broker.Marshal. A model's writer encodes a key and
// a value per change.
func marshalEntry[T any](v T) ([]byte, error) {
	switch x := any(v).(type) {
	case int:
		return cborx.AppendInt(make([]byte, 0, 9), int64(x)), nil
	case int64:
		return cborx.AppendInt(make([]byte, 0, 9), x), nil
	case string:
		if utf8.ValidString(x) {
			return cborx.AppendText(make([]byte, 0, len(x)+9), x), nil
		}
	}
	return broker.Marshal(v)
}

// appendKey is marshalEntry for a key, which the feed copies only when it
// is new (feed.Feed.Set): an int, int64, string or a Value's struct{} is
// encoded into buf, a
// buffer of the writer's own (on its stack), so that a change of a key
// the model holds allocates nothing for the key.
func appendKey[T any](buf []byte, v T) ([]byte, error) {
	switch x := any(v).(type) {
	case int:
		return cborx.AppendInt(buf, int64(x)), nil
	case int64:
		return cborx.AppendInt(buf, x), nil
	case string:
		if utf8.ValidString(x) {
			return cborx.AppendText(buf, x), nil
		}
	case struct{}:
		return append(buf, 0xa0), nil // a Value's key: an empty map
	}
	return broker.Marshal(v)
}

// keyBuf is the room appendKey is given on the writer's stack: the
// encoding of any int and of a string of up to 38 bytes.
type keyBuf [40]byte
