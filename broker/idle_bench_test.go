package broker

import (
	"context"
	"flag"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
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
		measureIdle(b, *idleConns, *idleWindow, func() (func(), error) {
			c, err := Dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				return nil, err
			}
			return func() { c.Close(); <-c.Done() }, nil
		}, func() int { return len(srv.Conns()) })
	}
}

// measureIdle opens n connections with open, waits until the server holds
// them all (serverConns) and the process has settled, and measures what
// they cost while idle for window; then it closes them.
func measureIdle(b *testing.B, n int, window time.Duration, open func() (func(), error), serverConns func() int) {
	b.Helper()
	heap0, g0 := settledHeap(), runtime.NumGoroutine()
	closers := make([]func(), 0, n)
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for len(closers) < n {
		c, err := open()
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, c)
	}
	for deadline := time.Now().Add(30 * time.Second); serverConns() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("the server holds %d of %d connections", serverConns(), n)
		}
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
