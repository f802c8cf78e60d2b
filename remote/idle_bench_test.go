package remote

import (
	"context"
	"flag"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/tether-go/tether/broker"
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

// benchIdleClients connects n clients to addr, waits until the server
// holds them all and the process has settled, measures them while idle for
// window, and closes them.
func benchIdleClients(b *testing.B, addr string, n int, window time.Duration, serverConns func() int) {
	heap0, g0 := settledHeap(), runtime.NumGoroutine()
	clients := make([]*Client, 0, n)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(clients) < n {
		cl, err := Connect(ctx, "tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, cl)
		if err := cl.WaitConnected(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for serverConns() < n {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // handshake goroutines return, timers settle
	heap1, g1 := settledHeap(), runtime.NumGoroutine()
	cpu0 := cpuTime()
	time.Sleep(window)
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(n), "heap-B/conn")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/conn")
	scale := (5000 / float64(n)) * (float64(10*time.Second) / float64(window))
	b.ReportMetric(float64(cpu.Microseconds())/1000*scale, "cpu-ms/5000conns/10s")
}

// settledHeap returns the live heap after garbage collection.
func settledHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
