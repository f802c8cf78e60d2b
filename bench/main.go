package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
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

	// The scale workloads (scale.go).
	fanSets      int           // Sets (messages) per fan-out cell
	idleConns    []int         // connection counts of the idle workloads
	idleFor      time.Duration // idleness over which CPU is measured
	idleSettle   time.Duration // wait between connecting and measuring idleness
	stormClients int           // clients of the reconnect storm
	waitLimit    time.Duration // longest wait for a fan-out or storm to complete
}

// key names one cell: a system on a workload.
type key struct{ sys, wl string }

// results gathers every round's measurements.
type results struct {
	systems    []string // names, in order
	labels     map[key]string
	workloads  []workload
	cells      map[key][]cellResult
	allocs     map[string]allocResult
	problems   []string
	scale      map[string][][]figure // scale workload name -> rounds -> figures
	scaleOrder []scaleWorkload       // the scale workloads selected, in order
}

// quickScale shortens the scale workloads for -quick, leaving alone what
// the user set explicitly.
func quickScale(cfg *config, set map[string]bool, idleConns *string) {
	if !set["fanout-sets"] {
		cfg.fanSets = 2000
	}
	if !set["idle-conns"] {
		*idleConns = "500"
	}
	if !set["idle-for"] {
		cfg.idleFor = time.Second
	}
	if !set["storm-clients"] {
		cfg.stormClients = 200
	}
	cfg.waitLimit = 30 * time.Second
}

// parseFlags reads the command line into a config.
func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	quick := fs.Bool("quick", false, "one short round per cell and smaller scale cells (a CI-friendly run)")
	rounds := fs.Int("rounds", 5, "rounds per cell; the table shows the median")
	duration := fs.Duration("duration", time.Second, "measured time per cell and round")
	only := fs.String("only", "", "run only workloads whose name contains this (e.g. echo-64B, callback, allocs, relay, fanout, idle, storm), or only Tether and the system of this name")
	fanSets := fs.Int("fanout-sets", 20000, "Sets (and NATS messages) per fan-out cell")
	idleConns := fs.String("idle-conns", "1000,5000", "comma-separated connection counts of the idle workloads")
	idleFor := fs.Duration("idle-for", 10*time.Second, "idleness over which the idle workloads measure CPU")
	storm := fs.Int("storm-clients", 1000, "remote.Clients in the reconnect storm")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run . [-quick] [-rounds N] [-duration D] [-only SUBSTRING] [-fanout-sets W] [-idle-conns N,N] [-idle-for D] [-storm-clients N]")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	cfg := config{
		rounds: *rounds, warmup: 200 * time.Millisecond, duration: *duration, benchtime: time.Second,
		callTimeout: 10 * time.Second, only: *only, quick: *quick,
		fanSets: *fanSets, idleFor: *idleFor, idleSettle: idleSettle, stormClients: *storm, waitLimit: 2 * time.Minute,
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
		quickScale(&cfg, set, idleConns)
	}
	var err error
	if cfg.idleConns, err = parseCounts(*idleConns); err != nil {
		return cfg, fmt.Errorf("-idle-conns: %w", err)
	}
	if cfg.rounds < 1 || cfg.duration <= 0 || cfg.fanSets < 1 || cfg.idleFor <= 0 || cfg.stormClients < 1 {
		return cfg, errors.New("-rounds, -fanout-sets and -storm-clients must be at least 1, -duration and -idle-for positive")
	}
	return cfg, nil
}

// parseCounts reads a comma-separated list of positive integers.
func parseCounts(s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// main parses the flags, runs the selected workloads and prints the report.
func main() {
	testing.Init() // testing.Benchmark reads -test.benchtime
	cfg, err := parseFlags(os.Args[1:])
	if err == nil {
		err = flag.CommandLine.Set("test.benchtime", cfg.benchtime.String())
	}
	if err != nil {
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
// system (with Tether, to compare with) on every echo-style workload and on
// the scale workloads that compare with it; anything else selects the
// workloads whose name contains it ("allocs" for the allocation measurement).
func selection(cfg config) (systems func(string) bool, wls []workload, allocs bool, scales []scaleWorkload) {
	all, allScale := allWorkloads(), allScales(cfg)
	if cfg.only == "" {
		return func(string) bool { return true }, all, true, allScale
	}
	for _, s := range allSystems() {
		if s.Name() == cfg.only {
			for _, sw := range allScale {
				if slices.Contains(sw.peers, cfg.only) {
					scales = append(scales, sw)
				}
			}
			return func(n string) bool { return n == "tether" || n == cfg.only }, all, true, scales
		}
	}
	for _, wl := range all {
		if strings.Contains(wl.name, cfg.only) {
			wls = append(wls, wl)
		}
	}
	for _, sw := range allScale {
		if strings.Contains(sw.name, cfg.only) {
			scales = append(scales, sw)
		}
	}
	return func(string) bool { return true }, wls, strings.Contains("allocs", cfg.only), scales
}

// run measures every selected workload: first the calls of the System
// workloads, then the scale workloads, each with its systems interleaved
// round by round.
func run(cfg config) *results {
	useSys, wls, doAllocs, scales := selection(cfg)
	res := &results{
		labels:     map[key]string{},
		workloads:  wls,
		cells:      map[key][]cellResult{},
		allocs:     map[string]allocResult{},
		scale:      map[string][][]figure{},
		scaleOrder: scales,
	}
	if len(wls) == 0 && !doAllocs && len(scales) == 0 {
		res.problems = append(res.problems, fmt.Sprintf("-only %q matches no system and no workload", cfg.only))
		return res
	}
	if len(wls) > 0 || doAllocs {
		var systems []System
		for _, s := range allSystems() {
			if useSys(s.Name()) {
				systems = append(systems, s)
			}
		}
		runCalls(cfg, systems, wls, doAllocs, res)
	}
	for _, sw := range scales {
		runScale(sw, cfg, res)
	}
	return res
}

// runCalls starts every selected system, measures allocations, then runs
// each workload's cells round by round with the systems interleaved inside
// each round (tether, peer, peer, …, then the next round), so that a slow
// spell of the machine hits every system of a cell alike; it then closes
// the systems and checks that their goroutines are gone.
func runCalls(cfg config, systems []System, wls []workload, doAllocs bool, res *results) {
	before := runtime.NumGoroutine()
	var live []System
	for _, s := range systems {
		res.systems = append(res.systems, s.Name())
		if startSystem(s, cfg, wls, doAllocs, res) {
			live = append(live, s)
		}
	}
	for _, wl := range wls {
		for round := 1; round <= cfg.rounds; round++ {
			for _, s := range live {
				runOneCell(s, wl, round, cfg, res)
			}
		}
	}
	for _, s := range live {
		if err := s.Close(); err != nil {
			res.problems = append(res.problems, fmt.Sprintf("%s: close: %v", s.Name(), err))
		}
	}
	if n, summary := settle(before, 5*time.Second); n > before {
		res.problems = append(res.problems, fmt.Sprintf(
			"%d goroutines left after closing the systems, %d before starting them:\n%s", n, before, summary))
	}
}

// startSystem starts s and measures its allocations; a system that cannot
// start has every cell recorded as failed, and false is returned.
func startSystem(s System, cfg config, wls []workload, doAllocs bool, res *results) bool {
	name := s.Name()
	progress("%-8s starting", name)
	if err := s.Start(); err != nil {
		res.problems = append(res.problems, fmt.Sprintf("%s: start failed: %v", name, err))
		for _, wl := range wls {
			k := key{name, wl.name}
			for range cfg.rounds {
				res.cells[k] = append(res.cells[k], cellResult{err: fmt.Errorf("start: %w", err)})
			}
		}
		if doAllocs {
			res.allocs[name] = allocResult{err: fmt.Errorf("start: %w", err)}
		}
		s.Close()
		return false
	}
	if doAllocs {
		a := measureAllocs(s, cfg)
		res.allocs[name] = a
		if a.err != nil {
			res.problems = append(res.problems, fmt.Sprintf("%s: allocs: %v", name, a.err))
			progress("%-8s allocs        FAILED: %v", name, a.err)
		} else {
			progress("%-8s allocs        %d allocs, %d B per call", name, a.allocs, a.bytes)
		}
	}
	return true
}

// runOneCell measures s on wl for one round and records the result.
func runOneCell(s System, wl workload, round int, cfg config, res *results) {
	name := s.Name()
	k := key{name, wl.name}
	res.labels[k] = s.Label(wl.kind, wl.callers)
	r := runCell(s, wl, cfg)
	res.cells[k] = append(res.cells[k], r)
	if r.err != nil {
		res.problems = append(res.problems, fmt.Sprintf("%s on %s (round %d): cell aborted: %v", res.labels[k], wl.name, round, r.err))
		progress("round %d/%d  %-14s %-8s FAILED: %v", round, cfg.rounds, wl.name, name, r.err)
		return
	}
	progress("round %d/%d  %-14s %-8s %10.0f calls/s", round, cfg.rounds, wl.name, name, r.rate)
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
