//go:build unix

package remote

import (
	"context"
	"flag"
	"net"
	"testing"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
)

// The idle benchmark's knobs: how many clients it holds connected and for
// how long it watches them do nothing.
var (
	idleClients = flag.Int("idle.conns", 1000, "BenchmarkIdleClients: clients held connected")
	idleWindow  = flag.Duration("idle.window", 10*time.Second, "BenchmarkIdleClients: how long the idle CPU is measured")
)

// BenchmarkIdleClients connects -idle.conns remote.Clients to a Server
// (loopback TCP, default options), lets them sit idle for -idle.window,
// and reports what they cost, both sides together: heap bytes and
// goroutines per connection, and the process's CPU time while idle,
// scaled to 5,000 connections over 10 s (as broker's BenchmarkIdleConns).
// Run it with -benchtime 1x.
func BenchmarkIdleClients(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := broker.NewServer(registry.New())
	go srv.Serve(ln)
	defer srv.Close()
	for i := 0; i < b.N; i++ {
		benchIdleClients(b, ln.Addr().String(), *idleClients, *idleWindow, func() int { return len(srv.Conns()) })
	}
}

// benchIdleClients connects n clients to addr, each waiting for its first
// link, and measures them idle (testkit.MeasureIdle).
func benchIdleClients(b *testing.B, addr string, n int, window time.Duration, serverConns func() int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testkit.MeasureIdle(b, n, window, func() (func(), error) {
		cl, err := Connect(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if err := cl.WaitConnected(ctx); err != nil {
			cl.Close()
			return nil, err
		}
		return func() { cl.Close() }, nil
	}, serverConns)
}
