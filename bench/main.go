package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

type config struct {
	quick       bool
	rounds      int
	warmup      time.Duration
	duration    time.Duration
	benchtime   time.Duration
	callTimeout time.Duration
	only        string
}

// key names one cell: a system on a workload.
type key struct{ sys, wl string }

// results gathers every round's measurements.
type results struct {
	systems   []string // names, in order
	labels    map[key]string
	workloads []workload
	cells     map[key][]cellResult
	allocs    map[string]allocResult
	problems  []string
}

func main() {
	testing.Init() // testing.Benchmark reads -test.benchtime
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	quick := fs.Bool("quick", false, "one short round per cell (finishes within a minute)")
	rounds := fs.Int("rounds", 5, "rounds per cell; the table shows the median")
	duration := fs.Duration("duration", time.Second, "measured time per cell and round")
	only := fs.String("only", "", "run only workloads whose name contains this (e.g. echo-64B, callback, allocs), or only Tether and the system of this name")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run . [-quick] [-rounds N] [-duration D] [-only SUBSTRING]")
		fs.PrintDefaults()
	}
	fs.Parse(os.Args[1:])

	cfg := config{
		rounds:      *rounds,
		warmup:      200 * time.Millisecond,
		duration:    *duration,
		benchtime:   time.Second,
		callTimeout: 10 * time.Second,
		only:        *only,
		quick:       *quick,
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["rounds"] {
			cfg.rounds = 1
		}
		if !set["duration"] {
			cfg.duration = 250 * time.Millisecond
		}
		cfg.warmup = 50 * time.Millisecond
		cfg.benchtime = 300 * time.Millisecond
	}
	if cfg.rounds < 1 || cfg.duration <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -rounds must be at least 1 and -duration positive")
		os.Exit(2)
	}
	if err := flag.CommandLine.Set("test.benchtime", cfg.benchtime.String()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}

	baseline := runtime.NumGoroutine()
	start := time.Now()
	res := run(cfg)
	if n, summary := settle(baseline, 5*time.Second); n > baseline {
		res.problems = append(res.problems, fmt.Sprintf(
			"WARNING: %d goroutines still running at the end, %d at the start:\n%s", n, baseline, summary))
	}
	printReport(os.Stdout, cfg, res, time.Since(start))
}

// selection decides what runs under -only: a system's name selects that
// system (with Tether, to compare with) on every workload; anything else
// selects the workloads whose name contains it ("allocs" for the allocation
// measurement).
func selection(cfg config) (systems func(string) bool, wls []workload, allocs bool) {
	all := allWorkloads()
	if cfg.only == "" {
		return func(string) bool { return true }, all, true
	}
	for _, s := range allSystems() {
		if s.Name() == cfg.only {
			return func(n string) bool { return n == "tether" || n == cfg.only }, all, true
		}
	}
	for _, wl := range all {
		if strings.Contains(wl.name, cfg.only) {
			wls = append(wls, wl)
		}
	}
	return func(string) bool { return true }, wls, strings.Contains("allocs", cfg.only)
}

func run(cfg config) *results {
	useSys, wls, doAllocs := selection(cfg)
	res := &results{
		labels:    map[key]string{},
		workloads: wls,
		cells:     map[key][]cellResult{},
		allocs:    map[string]allocResult{},
	}
	if len(wls) == 0 && !doAllocs {
		res.problems = append(res.problems, fmt.Sprintf("-only %q matches no system and no workload", cfg.only))
		return res
	}
	for _, s := range allSystems() {
		if useSys(s.Name()) {
			res.systems = append(res.systems, s.Name())
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		for _, s := range allSystems() { // fresh instances every round
			if !useSys(s.Name()) {
				continue
			}
			runSystem(s, round, cfg, wls, doAllocs && round == 1, res)
		}
	}
	return res
}

// runSystem starts one system, measures it on every selected workload,
// closes it and checks that its goroutines are gone.
func runSystem(s System, round int, cfg config, wls []workload, doAllocs bool, res *results) {
	name := s.Name()
	before := runtime.NumGoroutine()
	progress("round %d/%d  %-8s starting", round, cfg.rounds, name)
	if err := s.Start(); err != nil {
		msg := fmt.Sprintf("%s: start failed (round %d): %v", name, round, err)
		res.problems = append(res.problems, msg)
		for _, wl := range wls {
			res.cells[key{name, wl.name}] = append(res.cells[key{name, wl.name}], cellResult{err: fmt.Errorf("start: %w", err)})
		}
		if doAllocs {
			res.allocs[name] = allocResult{err: fmt.Errorf("start: %w", err)}
		}
		s.Close()
		return
	}
	if doAllocs {
		a := measureAllocs(s, cfg)
		res.allocs[name] = a
		if a.err != nil {
			res.problems = append(res.problems, fmt.Sprintf("%s: allocs: %v", name, a.err))
			progress("round %d/%d  %-8s allocs        FAILED: %v", round, cfg.rounds, name, a.err)
		} else {
			progress("round %d/%d  %-8s allocs        %d allocs, %d B per call", round, cfg.rounds, name, a.allocs, a.bytes)
		}
	}
	for _, wl := range wls {
		k := key{name, wl.name}
		res.labels[k] = s.Label(wl.kind, wl.callers)
		r := runCell(s, wl, cfg)
		res.cells[k] = append(res.cells[k], r)
		if r.err != nil {
			res.problems = append(res.problems, fmt.Sprintf("%s on %s (round %d): cell aborted: %v", res.labels[k], wl.name, round, r.err))
			progress("round %d/%d  %-8s %-14s FAILED: %v", round, cfg.rounds, name, wl.name, r.err)
			continue
		}
		progress("round %d/%d  %-8s %-14s %10.0f calls/s", round, cfg.rounds, name, wl.name, r.rate)
	}
	if err := s.Close(); err != nil {
		res.problems = append(res.problems, fmt.Sprintf("%s: close (round %d): %v", name, round, err))
	}
	if n, summary := settle(before, 3*time.Second); n > before {
		res.problems = append(res.problems, fmt.Sprintf(
			"%s: %d goroutines left after Close (round %d), %d before Start:\n%s", name, n, round, before, summary))
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// settle waits up to d for the number of goroutines to come down to
// target. It returns the final count and, when it is above target, the
// functions the goroutines are in, most common first.
func settle(target int, d time.Duration) (int, string) {
	deadline := time.Now().Add(d)
	for {
		n := runtime.NumGoroutine()
		if n <= target {
			return n, ""
		}
		if time.Now().After(deadline) {
			return n, goroutineSummary()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func goroutineSummary() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		// Name each goroutine by the function that started it.
		fn := "(no creator: main or runtime)"
		for _, l := range strings.Split(g, "\n") {
			if c, ok := strings.CutPrefix(l, "created by "); ok {
				fn = c
				if i := strings.Index(fn, " in goroutine"); i > 0 {
					fn = fn[:i]
				}
			}
		}
		counts[fn]++
	}
	type fc struct {
		fn string
		n  int
	}
	var fcs []fc
	for f, n := range counts {
		fcs = append(fcs, fc{f, n})
	}
	sort.Slice(fcs, func(i, j int) bool { return fcs[i].n > fcs[j].n || fcs[i].n == fcs[j].n && fcs[i].fn < fcs[j].fn })
	var b strings.Builder
	for i, x := range fcs {
		if i == 8 {
			break
		}
		fmt.Fprintf(&b, "      %4d  started by %s\n", x.n, x.fn)
	}
	return strings.TrimRight(b.String(), "\n")
}
