//go:build unix

package broker

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// rtRoot is the server's root for the round-trip benchmarks, shaped as the
// bench module's tether system.
type rtRoot struct {
	remoteable.Referenceable
	sub *rtSub
}

// Sub returns an object that travels by reference (fetch-then-call).
func (r *rtRoot) Sub(ctx context.Context) (*rtSub, error) { return r.sub, nil }

// Callback calls back the object the caller passed (a call inside a call).
func (*rtRoot) Callback(ctx context.Context, cb *Ref, b []byte) ([]byte, error) {
	defer cb.Release()
	var out []byte
	err := cb.Call(ctx, "Call", &out, b)
	return out, err
}

// rtSub is the object fetched by reference.
type rtSub struct{ remoteable.Referenceable }

// Echo returns its argument.
func (*rtSub) Echo(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// rtCallback is the caller's object the server calls back.
type rtCallback struct{ remoteable.Referenceable }

// Call returns its argument.
func (*rtCallback) Call(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// rtPair connects a client to an rtRoot server over loopback TCP.
func rtPair(b *testing.B) (*Conn, *Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(&rtRoot{sub: &rtSub{}})
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	c, err := Dial(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for len(srv.Conns()) == 0 {
		time.Sleep(time.Millisecond)
	}
	return c, srv.Conns()[0]
}

// reportCalls reports the process's CPU time per operation since cpu0 (on
// a machine shared with other work it moves less than the wall time does),
// the writes and reads of the socket, both sides, per operation since c0
// and s0, and the sender's drain goroutines started per operation, both
// sides (drains0, from drains).
func reportCalls(b *testing.B, c, sc *Conn, cpu0 time.Duration, c0, s0 ConnStats, drains0 uint64) {
	b.ReportMetric(float64(testkit.CPUTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(drains(c, sc)-drains0)/float64(b.N), "drains/op")
	c1, s1 := c.Stats(), sc.Stats()
	b.ReportMetric(float64(c1.Writes-c0.Writes+s1.Writes-s0.Writes)/float64(b.N), "writes/op")
	b.ReportMetric(float64(c1.Reads-c0.Reads+s1.Reads-s0.Reads)/float64(b.N), "reads/op")
}

// drains is how many drain goroutines the senders of c and sc started.
func drains(c, sc *Conn) uint64 { return c.out.drainsStarted() + sc.out.drainsStarted() }

// BenchmarkCallback1 is one caller passing its own object, which the
// server's handler calls back before it answers: the bench module's
// callback-1 row.
func BenchmarkCallback1(b *testing.B) {
	c, sc := rtPair(b)
	ctx := context.Background()
	cb := &rtCallback{}
	in, out := make([]byte, 64), []byte(nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, c0, s0, d0 := testkit.CPUTime(b), c.Stats(), sc.Stats(), drains(c, sc)
	for i := 0; i < b.N; i++ {
		if err := c.Root().Call(ctx, "Callback", &out, cb, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCalls(b, c, sc, cpu0, c0, s0, d0)
}

// BenchmarkFetchCall1 is one caller fetching a reference, calling it and
// releasing it: the bench module's fetchcall-1 row.
func BenchmarkFetchCall1(b *testing.B) {
	c, sc := rtPair(b)
	ctx := context.Background()
	in, out := make([]byte, 64), []byte(nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, c0, s0, d0 := testkit.CPUTime(b), c.Stats(), sc.Stats(), drains(c, sc)
	for i := 0; i < b.N; i++ {
		ref, err := Call[*Ref](ctx, c.Root(), "Sub")
		if err != nil {
			b.Fatal(err)
		}
		if err := ref.Call(ctx, "Echo", &out, in); err != nil {
			b.Fatal(err)
		}
		ref.Release()
	}
	reportCalls(b, c, sc, cpu0, c0, s0, d0)
}

// BenchmarkTwoEchoes1 is one caller making two 64 B echo calls on a
// reference it holds: the floor FetchCall1 and Callback1 compare with (two
// round trips, nothing fetched, exported or released).
func BenchmarkTwoEchoes1(b *testing.B) {
	c, sc := rtPair(b)
	ctx := context.Background()
	ref, err := Call[*Ref](ctx, c.Root(), "Sub")
	if err != nil {
		b.Fatal(err)
	}
	defer ref.Release()
	in, out := make([]byte, 64), []byte(nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, c0, s0, d0 := testkit.CPUTime(b), c.Stats(), sc.Stats(), drains(c, sc)
	for i := 0; i < b.N; i++ {
		if err := ref.Call(ctx, "Echo", &out, in); err != nil {
			b.Fatal(err)
		}
		if err := ref.Call(ctx, "Echo", &out, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCalls(b, c, sc, cpu0, c0, s0, d0)
}

// BenchmarkCallback1Deadline is BenchmarkCallback1 with a deadline on the
// caller's context, as the bench module's calls have: the handler's
// context then has one too, and its call back waits on it.
func BenchmarkCallback1Deadline(b *testing.B) {
	c, sc := rtPair(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	cb := &rtCallback{}
	in, out := make([]byte, 64), []byte(nil)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, c0, s0, d0 := testkit.CPUTime(b), c.Stats(), sc.Stats(), drains(c, sc)
	for i := 0; i < b.N; i++ {
		if err := c.Root().Call(ctx, "Callback", &out, cb, in); err != nil {
			b.Fatal(err)
		}
	}
	reportCalls(b, c, sc, cpu0, c0, s0, d0)
}
