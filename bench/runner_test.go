package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSys is a System whose echo behaves as told, to test the runner.
type fakeSys struct {
	echo func(ctx context.Context, in []byte) ([]byte, error)
}

func (*fakeSys) Name() string                    { return "fake" }
func (*fakeSys) Label(kind string, n int) string { return "fake" }
func (*fakeSys) Start() error                    { return nil }
func (*fakeSys) Prepare(int) error               { return nil }
func (*fakeSys) Close() error                    { return nil }
func (f *fakeSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	return f.echo(ctx, in)
}
func (f *fakeSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	return f.echo(ctx, in)
}
func (f *fakeSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	return f.echo(ctx, in)
}

var testCfg = config{rounds: 1, warmup: 20 * time.Millisecond, duration: 50 * time.Millisecond, callTimeout: 200 * time.Millisecond}

var testWl = workload{name: "echo-64B-4", kind: "echo", size: 64, callers: 4}

func TestRunCellMeasures(t *testing.T) {
	r := runCell(&fakeSys{echo: func(ctx context.Context, in []byte) ([]byte, error) {
		time.Sleep(100 * time.Microsecond)
		return in, nil
	}}, testWl, testCfg)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.calls == 0 || r.rate <= 0 || r.p50 <= 0 || r.p99 < r.p50 {
		t.Fatalf("implausible result %+v", r)
	}
}

func TestRunCellReportsFailures(t *testing.T) {
	cases := map[string]func(ctx context.Context, in []byte) ([]byte, error){
		"boom": func(ctx context.Context, in []byte) ([]byte, error) { return nil, errors.New("boom") },
		"differs": func(ctx context.Context, in []byte) ([]byte, error) {
			return in[:1], nil
		},
		"panic: oops": func(ctx context.Context, in []byte) ([]byte, error) { panic("oops") },
		"deadline exceeded": func(ctx context.Context, in []byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}
	for want, echo := range cases {
		r := runCell(&fakeSys{echo: echo}, testWl, testCfg)
		if r.err == nil || !strings.Contains(r.err.Error(), want) {
			t.Errorf("error %v, want one containing %q", r.err, want)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{5, 1, 3}); m != 3 {
		t.Errorf("median = %v", m)
	}
	if m := median([]int64{4, 1, 3, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
}

func TestWorkloadNames(t *testing.T) {
	var names []string
	for _, wl := range allWorkloads() {
		names = append(names, wl.name)
	}
	got := strings.Join(names, " ")
	for _, want := range []string{"echo-64B-1", "echo-64B-32", "echo-4KiB-256", "echo-64KiB-1", "echo-1MiB-1", "echo-1MiB-32", "fetchcall-1", "fetchcall-32", "callback-1", "callback-32"} {
		if !strings.Contains(" "+got+" ", " "+want+" ") {
			t.Errorf("no workload %s in %s", want, got)
		}
	}
}

// namedSys is a fakeSys with a name that logs each echo call it answers.
type namedSys struct {
	fakeSys
	name string
}

func (s *namedSys) Name() string { return s.name }

func TestCallsInterleaveSystemsInsideEachCell(t *testing.T) {
	var mu sync.Mutex
	var order []string
	sys := func(name string) *namedSys {
		return &namedSys{name: name, fakeSys: fakeSys{echo: func(ctx context.Context, in []byte) ([]byte, error) {
			mu.Lock()
			if len(order) == 0 || order[len(order)-1] != name {
				order = append(order, name)
			}
			mu.Unlock()
			return in, nil
		}}}
	}
	cfg := testCfg
	cfg.rounds = 2
	wls := []workload{{name: "a", kind: "echo", size: 8, callers: 1}, {name: "b", kind: "echo", size: 8, callers: 1}}
	res := &results{labels: map[key]string{}, cells: map[key][]cellResult{}, allocs: map[string]allocResult{}}
	runCalls(cfg, []System{sys("tether"), sys("peer")}, wls, false, res)
	// Two workloads, two rounds each, the systems taking turns inside
	// every round.
	want := "tether peer tether peer tether peer tether peer"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("systems ran in the order %q, want %q", got, want)
	}
	if rs := cellRatios(res, "a", "peer"); len(rs) != 2 {
		t.Errorf("per-round ratios of workload a: %v, want 2", rs)
	}
}
