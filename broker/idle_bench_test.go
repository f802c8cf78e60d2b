//go:build unix

package broker

import (
	"context"
	"flag"
	"net"
	"testing"
	"time"

	"github.com/tether-go/tether/internal/testkit"
)

// The idle benchmark's knobs: how many connections it holds open and for
// how long it watches them do nothing.
var (
	idleConns  = flag.Int("idle.conns", 1000, "BenchmarkIdleConns: connections held open")
	idleWindow = flag.Duration("idle.window", 10*time.Second, "BenchmarkIdleConns: how long the idle CPU is measured")
)

// BenchmarkIdleConns opens -idle.conns connections (broker.Dial to a
// Server, loopback TCP, default options), lets them sit idle for
// -idle.window, and reports what they cost, both sides together: heap
// bytes and goroutines per connection, and the process's CPU time while
// idle, scaled to 5,000 connections over 10 s (the unit). Run it
// with -benchtime 1x.
func BenchmarkIdleConns(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(&benchEcho{})
	go srv.Serve(ln)
	defer srv.Close()
	for i := 0; i < b.N; i++ {
		testkit.MeasureIdle(b, *idleConns, *idleWindow, func() (func(), error) {
			c, err := Dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				return nil, err
			}
			return func() { c.Close(); <-c.Done() }, nil
		}, func() int { return len(srv.Conns()) })
	}
}
