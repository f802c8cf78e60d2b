package broker

import (
	"context"
	"net"
	"testing"

	"github.com/tether-go/tether/remoteable"
)

type benchEcho struct{ remoteable.Referenceable }

func (*benchEcho) Echo(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// benchPair connects a client to a server over loopback TCP. The returned
// function, called after the timed loop, reports the write and read system
// calls both sides made per call.
func benchPair(b *testing.B, opts ...Option) (*Conn, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(&benchEcho{}, opts...)
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c, err := Dial(context.Background(), "tcp", ln.Addr().String(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	var sc *Conn
	for sc == nil {
		if conns := srv.Conns(); len(conns) == 1 {
			sc = conns[0]
		}
	}
	c0, s0 := c.Stats(), sc.Stats()
	return c, func() {
		c1, s1 := c.Stats(), sc.Stats()
		n := float64(b.N)
		b.ReportMetric(float64(c1.Writes-c0.Writes+s1.Writes-s0.Writes)/n, "writes/op")
		b.ReportMetric(float64(c1.Reads-c0.Reads+s1.Reads-s0.Reads)/n, "reads/op")
	}
}

// BenchmarkEcho64 is one caller making 64-byte calls back to back over
// loopback TCP. Allocations count both sides: they share the process.
func BenchmarkEcho64(b *testing.B) { runEchoBench(b, 64) }

// BenchmarkEcho64K is one caller making 64 KiB calls: the message-stream
// path.
func BenchmarkEcho64K(b *testing.B) { runEchoBench(b, 64<<10) }

// BenchmarkEcho64Intercepted is BenchmarkEcho64 with one interceptor
// that does nothing on each side: what the interceptor seam costs.
func BenchmarkEcho64Intercepted(b *testing.B) {
	noop := func(ctx context.Context, call *CallInfo, next Invoker) error { return next(ctx, call) }
	runEchoBench(b, 64, WithClientInterceptors(noop), WithServerInterceptors(noop))
}

// runEchoBench has one caller echo size bytes back to back, on a pair of
// connections made with opts.
func runEchoBench(b *testing.B, size int, opts ...Option) {
	c, report := benchPair(b, opts...)
	ctx := context.Background()
	payload := make([]byte, size)
	var out []byte
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := root.Call(ctx, "Echo", &out, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report()
}

// BenchmarkEcho64KCancelable is BenchmarkEcho64K with a context that can
// end, as most callers' can: a large message's write then watches it
// (Conn.sendOnMsgStream).
func BenchmarkEcho64KCancelable(b *testing.B) {
	c, report := benchPair(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	payload := make([]byte, 64<<10)
	var out []byte
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := root.Call(ctx, "Echo", &out, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	report()
}

// BenchmarkEcho1M is one caller making 1 MiB calls.
func BenchmarkEcho1M(b *testing.B) { runEchoBench(b, 1<<20) }

// BenchmarkEcho64Parallel is many callers sharing one connection.
func BenchmarkEcho64Parallel(b *testing.B) { runEchoParallel(b, 64) }

// BenchmarkEcho64KParallel is 32 callers making 64 KiB calls on one
// connection.
func BenchmarkEcho64KParallel(b *testing.B) { runEchoParallel(b, 64<<10) }

// BenchmarkEcho1MParallel is 32 callers making 1 MiB calls on one
// connection.
func BenchmarkEcho1MParallel(b *testing.B) { runEchoParallel(b, 1<<20) }

// runEchoParallel has 32 callers share one connection, each echoing size
// bytes back to back.
func runEchoParallel(b *testing.B, size int) {
	c, report := benchPair(b)
	ctx := context.Background()
	root := c.Root()
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.SetParallelism(16) // 32 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		payload := make([]byte, size)
		var out []byte
		for pb.Next() {
			if err := root.Call(ctx, "Echo", &out, payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	report()
}
