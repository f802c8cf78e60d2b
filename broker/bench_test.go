package broker

import (
	"context"
	"net"
	"testing"

	"github.com/tether-go/tether/remoteable"
)

type benchEcho struct{ remoteable.Referenceable }

func (*benchEcho) Echo(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// benchPair connects a client to a server over loopback TCP.
func benchPair(b *testing.B) *Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(&benchEcho{})
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c, err := Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkEcho64 is one caller making 64-byte calls back to back over
// loopback TCP. Allocations count both sides: they share the process.
func BenchmarkEcho64(b *testing.B) {
	c := benchPair(b)
	ctx := context.Background()
	payload := make([]byte, 64)
	var out []byte
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := root.Call(ctx, "Echo", &out, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEcho64Parallel is many callers sharing one connection.
func BenchmarkEcho64Parallel(b *testing.B) {
	c := benchPair(b)
	ctx := context.Background()
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(64)
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		payload := make([]byte, 64)
		var out []byte
		for pb.Next() {
			if err := root.Call(ctx, "Echo", &out, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}
