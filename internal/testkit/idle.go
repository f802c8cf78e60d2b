//go:build unix

package testkit

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// MeasureIdle opens n connections with open (which returns how to close
// each), waits until the server holds them all (serverConns) and the
// process has settled, and reports what they cost while idle for window,
// both sides together: heap bytes and goroutines per connection, and the
// process's CPU time scaled to 5,000 connections over 10 s (issue 15's
// unit). It closes them before it returns. The idle benchmarks of broker
// and remote share it.
func MeasureIdle(b *testing.B, n int, window time.Duration, open func() (func(), error), serverConns func() int) {
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
	cpu0 := CPUTime(b)
	time.Sleep(window)
	cpu := CPUTime(b) - cpu0
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

// CPUTime returns the user and system CPU time the process has used; a
// failure to read it fails the benchmark rather than reporting zero.
func CPUTime(b testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
