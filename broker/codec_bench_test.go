package broker

import (
	"testing"
)

// benchRecord is a plain struct: fxamacker encodes and decodes it.
type benchRecord struct {
	Name  string            `cbor:"name"`
	ID    int64             `cbor:"id,omitempty"`
	Tags  []string          `cbor:"tags"`
	Attrs map[string]string `cbor:"attrs,omitempty"`
	Score float64           `cbor:"score"`
	Child *benchRecord      `cbor:"child,omitempty"`
}

// benchWalked has the same fields plus an interface one, which makes the
// type impure: the codec's own walker encodes and decodes it.
type benchWalked struct {
	Name  string            `cbor:"name"`
	ID    int64             `cbor:"id,omitempty"`
	Tags  []string          `cbor:"tags"`
	Attrs map[string]string `cbor:"attrs,omitempty"`
	Score float64           `cbor:"score"`
	Child *benchWalked      `cbor:"child,omitempty"`
	Extra any               `cbor:"extra,omitempty"`
}

// benchRoundTrip encodes v with Marshal and decodes it with Unmarshal into
// a fresh T, b.N times.
func benchRoundTrip[T any](b *testing.B, v T) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		data, err := Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		var out T
		if err := Unmarshal(data, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStructPlain is a plain struct's round trip through fxamacker.
func BenchmarkStructPlain(b *testing.B) {
	benchRoundTrip(b, benchRecord{Name: "alice", ID: 7, Tags: []string{"a", "b"},
		Attrs: map[string]string{"k": "v"}, Score: 1.5, Child: &benchRecord{Name: "bob"}})
}

// BenchmarkStructWalked is the same shape's round trip through the walker.
func BenchmarkStructWalked(b *testing.B) {
	benchRoundTrip(b, benchWalked{Name: "alice", ID: 7, Tags: []string{"a", "b"},
		Attrs: map[string]string{"k": "v"}, Score: 1.5, Child: &benchWalked{Name: "bob"}, Extra: int64(3)})
}

// BenchmarkCopyable is a registered Copyable's round trip into any.
func BenchmarkCopyable(b *testing.B) {
	benchRoundTrip[any](b, point{X: 1, Y: 2})
}
