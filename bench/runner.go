package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A workload is one column of the comparison: a kind of call, a payload
// size and a number of concurrent callers.
type workload struct {
	name    string
	kind    string // "echo", "fetchcall" or "callback"
	size    int
	callers int
}

func sizeName(n int) string {
	switch {
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%dKiB", n/1024)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

// allWorkloads lists every workload in the order they run and print.
func allWorkloads() []workload {
	var ws []workload
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		for _, n := range []int{1, 32, 256} {
			ws = append(ws, workload{fmt.Sprintf("echo-%s-%d", sizeName(size), n), "echo", size, n})
		}
	}
	for _, n := range []int{1, 32} { // 256 callers of 1 MiB would hold 256 MiB per system
		ws = append(ws, workload{fmt.Sprintf("echo-1MiB-%d", n), "echo", 1 << 20, n})
	}
	for _, n := range []int{1, 32} {
		ws = append(ws, workload{fmt.Sprintf("fetchcall-%d", n), "fetchcall", 64, n})
	}
	for _, n := range []int{1, 32} {
		ws = append(ws, workload{fmt.Sprintf("callback-%d", n), "callback", 64, n})
	}
	return ws
}

// callFunc is one of a System's three call methods.
type callFunc func(ctx context.Context, w int, in []byte) ([]byte, error)

func (wl workload) call(s System) callFunc {
	switch wl.kind {
	case "fetchcall":
		return s.FetchCall
	case "callback":
		return s.Callback
	}
	return s.Echo
}

// cellResult is one measurement of one system on one workload.
type cellResult struct {
	calls    int64
	elapsed  time.Duration
	rate     float64 // calls per second
	p50, p99 time.Duration
	err      error
}

// payload returns n bytes of a recognisable pattern.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	return b
}

// runCell prepares s for wl's callers, then measures one cell.
func runCell(s System, wl workload, cfg config) cellResult {
	if err := s.Prepare(wl.callers); err != nil {
		return cellResult{err: fmt.Errorf("prepare: %w", err)}
	}
	return measureCalls(wl.call(s), wl.size, wl.callers, cfg)
}

// measureCalls warms up, then measures callers goroutines calling fn back
// to back with a payload of size bytes.
func measureCalls(fn callFunc, size, callers int, cfg config) cellResult {
	in := payload(size)
	warm, err := runPhase(fn, in, callers, cfg.warmup, nil, cfg.callTimeout)
	if err != nil {
		return cellResult{err: fmt.Errorf("warm-up: %w", err)}
	}
	// Size each caller's latency slice from its warm-up rate, so that the
	// measured loop does not grow it.
	lats := make([][]time.Duration, callers)
	for w := range lats {
		est := float64(warm.counts[w]) * float64(cfg.duration) / float64(cfg.warmup)
		lats[w] = make([]time.Duration, 0, int(est*1.5)+256)
	}
	ph, err := runPhase(fn, in, callers, cfg.duration, lats, cfg.callTimeout)
	if err != nil {
		return cellResult{err: err}
	}
	var all []time.Duration
	for _, l := range ph.lats {
		all = append(all, l...)
	}
	r := cellResult{calls: int64(len(all)), elapsed: ph.elapsed}
	if len(all) == 0 || ph.elapsed <= 0 {
		return cellResult{err: errors.New("no call completed")}
	}
	slices.Sort(all)
	r.rate = float64(len(all)) / ph.elapsed.Seconds()
	r.p50 = all[len(all)*50/100]
	r.p99 = all[min(len(all)-1, len(all)*99/100)]
	return r
}

type phase struct {
	counts  []int64
	lats    [][]time.Duration
	elapsed time.Duration
}

// phaseRun is the state the callers of one phase share.
type phaseRun struct {
	fn     callFunc
	in     []byte
	ctx    context.Context
	cancel context.CancelFunc
	end    time.Time
	ph     *phase
	finish []time.Time

	stop     atomic.Bool
	errMu    sync.Mutex
	firstErr error
}

// runPhase runs callers goroutines making calls back to back for d. With
// lats non-nil, caller w appends each call's latency to lats[w]. The first
// failing call stops every caller and is returned. A phase whose callers do
// not all come back within the call timeout is abandoned (its goroutines
// are then reported as leaked at the end of the run).
func runPhase(fn callFunc, in []byte, callers int, d time.Duration, lats [][]time.Duration, callTimeout time.Duration) (phase, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+callTimeout)
	defer cancel()
	ph := phase{counts: make([]int64, callers), lats: lats}
	start := time.Now()
	pr := &phaseRun{fn: fn, in: in, ctx: ctx, cancel: cancel, end: start.Add(d), ph: &ph, finish: make([]time.Time, callers)}
	var wg sync.WaitGroup
	for w := 0; w < callers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			pr.caller(w)
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d + callTimeout + 5*time.Second):
		pr.stop.Store(true)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			return ph, fmt.Errorf("hung: callers still in calls %v after the phase should have ended; abandoned", callTimeout+10*time.Second)
		}
	}
	pr.errMu.Lock()
	defer pr.errMu.Unlock()
	if pr.firstErr != nil {
		return ph, pr.firstErr
	}
	last := start
	for _, f := range pr.finish {
		if f.After(last) {
			last = f
		}
	}
	ph.elapsed = last.Sub(start)
	return ph, nil
}

// caller is caller w's loop: calls back to back until the phase ends or a
// call fails, checking each reply and recording its latency.
func (pr *phaseRun) caller(w int) {
	lats := pr.ph.lats
	var lat []time.Duration
	if lats != nil {
		lat = lats[w][:0]
	}
	var n int64
	fail := func(err error) {
		if pr.stop.CompareAndSwap(false, true) {
			pr.errMu.Lock()
			pr.firstErr = fmt.Errorf("caller %d, after %d calls: %w", w, n, err)
			pr.errMu.Unlock()
			pr.cancel()
		}
	}
	// A panic in a call (a library bug) fails the cell, not the run.
	defer func() {
		if p := recover(); p != nil {
			fail(fmt.Errorf("panic: %v", p))
		}
	}()
	t0 := time.Now()
	for !pr.stop.Load() && t0.Before(pr.end) {
		out, err := pr.fn(pr.ctx, w, pr.in)
		t1 := time.Now()
		if err == nil && !bytes.Equal(out, pr.in) {
			err = fmt.Errorf("reply of %d bytes differs from the %d bytes sent", len(out), len(pr.in))
		}
		if err != nil {
			fail(err)
			break
		}
		if lats != nil {
			lat = append(lat, t1.Sub(t0))
		}
		n++
		t0 = t1
	}
	pr.ph.counts[w] = n
	pr.finish[w] = t0
	if lats != nil {
		lats[w] = lat
	}
}

// allocResult is what testing.Benchmark measured for one caller making 64 B
// echo calls: client and server share the process, so both sides count.
type allocResult struct {
	allocs, bytes int64
	nsPerOp       int64
	err           error
}

func measureAllocs(s System, cfg config) allocResult {
	if err := s.Prepare(1); err != nil {
		return allocResult{err: fmt.Errorf("prepare: %w", err)}
	}
	in := payload(64)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.callTimeout+time.Minute)
	defer cancel()
	for i := 0; i < 200; i++ { // connect lazily-dialled clients, fill pools
		out, err := s.Echo(ctx, 0, in)
		if err == nil && !bytes.Equal(out, in) {
			err = errors.New("reply differs from what was sent")
		}
		if err != nil {
			return allocResult{err: fmt.Errorf("warm-up: %w", err)}
		}
	}
	var callErr error
	r := testing.Benchmark(func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := s.Echo(ctx, 0, in); err != nil {
				callErr = err
				return
			}
		}
	})
	if callErr != nil {
		return allocResult{err: callErr}
	}
	if r.N == 0 {
		return allocResult{err: errors.New("testing.Benchmark did not run")}
	}
	return allocResult{allocs: r.AllocsPerOp(), bytes: r.AllocedBytesPerOp(), nsPerOp: r.NsPerOp()}
}

// median returns the median of xs (the mean of the middle two for an even
// count).
func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
