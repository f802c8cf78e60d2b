package broker

import (
	"context"
	"testing"

	"github.com/tether-go/tether/remoteable"
)

// benchEchoer is benchEcho's method as an interface, with the stub tether
// gen would write for it.
type benchEchoer interface {
	Echo(ctx context.Context, b []byte) ([]byte, error)
}

type benchEchoerStub struct{ c remoteable.Caller }

func (s *benchEchoerStub) TetherCaller() remoteable.Caller { return s.c }
func (s *benchEchoerStub) Echo(ctx context.Context, b []byte) ([]byte, error) {
	var r []byte
	err := s.c.Call(ctx, "Echo", &r, b)
	return r, err
}

func init() {
	remoteable.RegisterStub[benchEchoer](func(c remoteable.Caller) benchEchoer { return &benchEchoerStub{c} },
		"Echo(ctx context.Context, b []byte) ([]byte, error)")
}

// BenchmarkEcho64Typed is BenchmarkEcho64 through a typed stub: the same
// call with the same arguments, made as echo.Echo(ctx, payload). Compare
// the two for what a stub costs (at most one allocation: its reply
// variable, which escapes through the Caller interface).
func BenchmarkEcho64Typed(b *testing.B) {
	c, report := benchPair(b)
	ctx := context.Background()
	payload := make([]byte, 64)
	echo, err := remoteable.As[benchEchoer](c.Root())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := echo.Echo(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report()
}

// BenchmarkEcho64Generic is BenchmarkEcho64Typed made with broker.Call[T],
// the dynamic form a typed stub replaces: its result is a new slice per
// call, as the stub's is.
func BenchmarkEcho64Generic(b *testing.B) {
	c, report := benchPair(b)
	ctx := context.Background()
	payload := make([]byte, 64)
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Call[[]byte](ctx, root, "Echo", payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report()
}
