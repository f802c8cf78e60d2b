package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// footnotes say how each peer was adapted to the workloads.
var footnotes = []string{
	"All systems run in this process over loopback TCP (127.0.0.1). Callers of a cell share ONE client connection, except drpc.",
	"tether: fetchcall = Call[*broker.Ref](root, \"Sub\") then ref.Call(\"Echo\") then ref.Release(); callback = the caller passes an object embedding remoteable.Referenceable, the handler takes *broker.Ref, calls it and releases it.",
	"net/rpc: gob codec, one shared client. fetchcall = a Lookup call returning a service name, then \"<name>.Echo\". callback = the client runs a net/rpc callback service on a listener of its own; the server dials it once (on the first callback) and calls it over that reverse connection. net/rpc takes no context: a call gives up on its context by abandoning the reply.",
	"grpc: hand-written ServiceDesc, raw-bytes CodecV2 forced on server and client (no protobuf). One shared ClientConn. fetchcall = Lookup returning a method name, then a unary call to it. callback = a bidirectional stream per call: data up, callback request down, callback answer up, result down.",
	"drpc: hand-written Description, raw-bytes Encoding. A drpc connection carries one call at a time, so each concurrent caller has a connection of its own (the row says how many). fetchcall and callback as for grpc (callback = a stream per call).",
	"capnp: capnproto.org/go/capnp/v3 v3.1.0-alpha.2, hand-written bindings for echo.capnp, one shared rpc.Conn. fetchcall is PIPELINED: echo is called on the promised result of sub, so both calls travel in one round trip; sub returns a new capability per call, because one shared capability received and released by many callers at once crashes capnp-go v3.1.0-alpha.2 (nil import-table entry in rpc.(*importClient).Shutdown). callback = a Callback capability; the server's handler calls call.Go() before calling it back. Echo handlers run one at a time per capability (capnp-go's default, no call.Go()).",
	"nats: embedded nats-server (maximum payload raised to 8 MiB for the 1 MiB echo; the default is exactly 1 MiB); every request makes two hops (caller -> server -> responder and back). Callers share one nats.Conn; the responder has its own, and answers a subject's requests one at a time. fetchcall = a lookup request returning a subject, then a request to it. callback = the request carries a per-caller callback subject (subscribed on the callers' connection); the responder, in a goroutine per request, requests that subject and answers with its reply.",
	"Allocations: one caller making 64 B echo calls under testing.Benchmark; client and server share the process, so both sides (and, for nats, the embedded nats-server) are counted.",
}

// cellSummary is the median over rounds of one cell, or why it failed.
type cellSummary struct {
	ok       bool
	rate     float64
	p50, p99 time.Duration
	err      error
}

func summarize(rs []cellResult) cellSummary {
	if len(rs) == 0 {
		return cellSummary{err: fmt.Errorf("not run")}
	}
	var rates []float64
	var p50s, p99s []time.Duration
	for _, r := range rs {
		if r.err != nil {
			return cellSummary{err: r.err}
		}
		rates = append(rates, r.rate)
		p50s = append(p50s, r.p50)
		p99s = append(p99s, r.p99)
	}
	return cellSummary{ok: true, rate: median(rates), p50: median(p50s), p99: median(p99s)}
}

func fmtDur(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 1000:
		return fmt.Sprintf("%.1fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1000)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

// fmtRate prints a rate with thousands separators.
func fmtRate(r float64) string {
	s := fmt.Sprintf("%.0f", r)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// printReport prints the whole report: the tables for people, then the
// machine-readable lines.
func printReport(out io.Writer, cfg config, res *results, took time.Duration) {
	mode := "full"
	if cfg.quick {
		mode = "quick"
	}
	fmt.Fprintf(out, "\nTether benchmark (%s): %d round(s) of %v per cell after a %v warm-up; median across rounds.\n",
		mode, cfg.rounds, cfg.duration, cfg.warmup)
	fmt.Fprintf(out, "%s %s/%s, GOMAXPROCS=%d, %d CPUs; took %v.\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), took.Round(time.Second))
	if cfg.only != "" {
		fmt.Fprintf(out, "Only: %q.\n", cfg.only)
	}
	fmt.Fprintf(out, "Systems interleaved inside each cell: every round runs tether and each peer one after the other.\n")

	sums := map[key]cellSummary{}
	for k, rs := range res.cells {
		sums[k] = summarize(rs)
	}
	printCallTable(out, res, sums)
	printScale(out, res)
	printAllocTable(out, res)
	if len(res.workloads) > 0 || len(res.allocs) > 0 {
		fmt.Fprintf(out, "\nHow each peer was adapted\n\n")
		for i, f := range footnotes {
			fmt.Fprintf(out, "%s\n", wrap(fmt.Sprintf("  [%d] ", i+1), f, 100))
		}
	}
	fmt.Fprintf(out, "\nProblems\n\n")
	if len(res.problems) == 0 {
		fmt.Fprintf(out, "  none\n")
	}
	for _, p := range res.problems {
		fmt.Fprintf(out, "  - %s\n", p)
	}

	// Machine-readable lines, last.
	fmt.Fprintln(out)
	printCallLines(out, res, sums)
	printScaleLines(out, res)
	printAllocLines(out, res)
}

// printCallTable prints every call workload's cells with Tether's ratio to
// each peer and that ratio's range across rounds.
func printCallTable(out io.Writer, res *results, sums map[key]cellSummary) {
	if len(res.workloads) == 0 {
		return
	}
	fmt.Fprintf(out, "\nThroughput and latency per call (tether/peer: throughput ratio, >1 means Tether faster; per round: its lowest and highest)\n\n")
	var rows [][]string
	for _, wl := range res.workloads {
		t := sums[key{"tether", wl.name}]
		for i, sys := range res.systems {
			k := key{sys, wl.name}
			name := ""
			if i == 0 {
				name = wl.name
			}
			label := res.labels[k]
			if label == "" {
				label = sys
			}
			s := sums[k]
			if !s.ok {
				rows = append(rows, []string{name, label, "FAILED", "-", "-", "-", "-"})
				continue
			}
			ratio, spread := "", ""
			if sys != "tether" {
				ratio, spread = "n/a", fmtSpread(cellRatios(res, wl.name, sys))
				if t.ok {
					ratio = fmt.Sprintf("%.2f", t.rate/s.rate)
				}
			}
			rows = append(rows, []string{name, label, fmtRate(s.rate), fmtDur(s.p50), fmtDur(s.p99), ratio, spread})
		}
		rows = append(rows, nil)
	}
	printTable(out, []string{"workload", "system", "calls/s", "p50", "p99", "tether/peer", "per round"}, rows[:len(rows)-1], 2)
}

// printAllocTable prints the allocations per call of each system.
func printAllocTable(out io.Writer, res *results) {
	if len(res.allocs) == 0 {
		return
	}
	fmt.Fprintf(out, "\nAllocations per 64 B echo call (one caller; client and server sides together)\n\n")
	var rows [][]string
	for _, sys := range res.systems {
		a, ok := res.allocs[sys]
		switch {
		case !ok:
		case a.err != nil:
			rows = append(rows, []string{sys, "FAILED", "-", "-"})
		default:
			rows = append(rows, []string{sys, fmt.Sprint(a.allocs), fmt.Sprint(a.bytes), fmtDur(time.Duration(a.nsPerOp))})
		}
	}
	printTable(out, []string{"system", "allocs/call", "bytes/call", "time/call"}, rows, 1)
}

// printCallLines prints RATIO and SPREAD for every call workload and peer.
func printCallLines(out io.Writer, res *results, sums map[key]cellSummary) {
	for _, wl := range res.workloads {
		t := sums[key{"tether", wl.name}]
		for _, sys := range res.systems {
			if sys == "tether" {
				continue
			}
			s := sums[key{sys, wl.name}]
			if t.ok && s.ok && s.rate > 0 {
				fmt.Fprintf(out, "RATIO %s %s %.3f\n", wl.name, sys, t.rate/s.rate)
			} else {
				fmt.Fprintf(out, "RATIO %s %s n/a\n", wl.name, sys)
			}
			printSpreadLine(out, wl.name, sys, cellRatios(res, wl.name, sys))
		}
	}
}

// printAllocLines prints ALLOCS and BYTES for every system measured.
func printAllocLines(out io.Writer, res *results) {
	for _, what := range []string{"ALLOCS", "BYTES"} {
		for _, sys := range res.systems {
			a, ok := res.allocs[sys]
			if !ok {
				continue
			}
			switch {
			case a.err != nil:
				fmt.Fprintf(out, "%s %s n/a\n", what, sys)
			case what == "ALLOCS":
				fmt.Fprintf(out, "%s %s %d\n", what, sys, a.allocs)
			default:
				fmt.Fprintf(out, "%s %s %d\n", what, sys, a.bytes)
			}
		}
	}
}

// printTable prints rows under header, the first left columns aligned left
// and the others right; a nil row is a blank line.
func printTable(out io.Writer, header []string, rows [][]string, left int) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i < left {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
			if i < len(r)-1 {
				b.WriteString("   ")
			}
		}
		fmt.Fprintln(out, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for _, r := range rows {
		if r == nil {
			fmt.Fprintln(out)
			continue
		}
		line(r)
	}
}

// wrap fills text to width columns, the first line after prefix and the
// others indented to match.
func wrap(prefix, text string, width int) string {
	indent := strings.Repeat(" ", len(prefix))
	var b strings.Builder
	b.WriteString(prefix)
	col := len(prefix)
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if col+1+len(word) > width {
				b.WriteString("\n" + indent)
				col = len(indent)
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}

// cellRatios returns Tether's throughput over sys's on workload wl in each
// round where both cells succeeded: the spread of the ratio.
func cellRatios(res *results, wl, sys string) []float64 {
	ts, ps := res.cells[key{"tether", wl}], res.cells[key{sys, wl}]
	var rs []float64
	for i := range min(len(ts), len(ps)) {
		if ts[i].err == nil && ps[i].err == nil && ps[i].rate > 0 {
			rs = append(rs, ts[i].rate/ps[i].rate)
		}
	}
	return rs
}

// fmtSpread prints the lowest and highest of per-round ratios.
func fmtSpread(rs []float64) string {
	if len(rs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3g–%.3g", slices.Min(rs), slices.Max(rs))
}

// printSpreadLine prints SPREAD <workload> <peer> <min> <max> <rounds>.
func printSpreadLine(out io.Writer, name, peer string, rs []float64) {
	if len(rs) == 0 {
		fmt.Fprintf(out, "SPREAD %s %s n/a\n", name, peer)
		return
	}
	fmt.Fprintf(out, "SPREAD %s %s %.4g %.4g %d\n", name, peer, slices.Min(rs), slices.Max(rs), len(rs))
}

// scaleMedians returns, for each (system, metric) of a scale workload in
// the order first measured, its figures across rounds.
func scaleMedians(rounds [][]figure) ([]figure, map[[2]string][]float64) {
	var order []figure
	vals := map[[2]string][]float64{}
	for _, figs := range rounds {
		for _, f := range figs {
			k := [2]string{f.sys, f.metric}
			if _, ok := vals[k]; !ok {
				order = append(order, f)
			}
			vals[k] = append(vals[k], f.value)
		}
	}
	return order, vals
}

// printScale prints the scale workloads: each figure's median and range
// across rounds, then each comparison's ratio and per-round spread.
func printScale(out io.Writer, res *results) {
	if len(res.scale) == 0 {
		return
	}
	fmt.Fprintf(out, "\nScale workloads (median across rounds, then the lowest and highest round)\n\n")
	var rows, ratios [][]string
	for _, sw := range allScalesRun(res) {
		order, vals := scaleMedians(res.scale[sw.name])
		if len(order) == 0 {
			rows = append(rows, []string{sw.name, "-", "FAILED", "-", "-"}, nil)
			continue
		}
		for i, f := range order {
			name := ""
			if i == 0 {
				name = sw.name
			}
			v := vals[[2]string{f.sys, f.metric}]
			rows = append(rows, []string{name, f.sys, f.metric, fmtFigure(median(v), f.unit),
				fmtFigure(slices.Min(v), f.unit) + " – " + fmtFigure(slices.Max(v), f.unit)})
		}
		rows = append(rows, nil)
		for _, p := range sw.pairs {
			r, _ := pairRatio(vals, order, p)
			ratios = append(ratios, []string{p.name, p.peer, r, fmtSpread(roundRatios(res.scale[sw.name], p))})
		}
	}
	printTable(out, []string{"workload", "system", "metric", "median", "range"}, rows[:len(rows)-1], 3)
	if len(ratios) > 0 {
		fmt.Fprintf(out, "\nScale ratios (>1 means Tether better: rates divided, times and costs inverted)\n\n")
		printTable(out, []string{"comparison", "peer", "ratio", "per round"}, ratios, 2)
	}
}

// pairRatio returns p's ratio of medians, formatted, or "n/a".
func pairRatio(vals map[[2]string][]float64, order []figure, p pair) (string, bool) {
	b, q := vals[[2]string{p.base, p.metric}], vals[[2]string{p.peer, p.metric}]
	if len(b) == 0 || len(q) == 0 {
		return "n/a", false
	}
	f, _ := find(order, p.base, p.metric)
	bm, qm := median(b), median(q)
	switch {
	case f.lower && bm > 0:
		return fmt.Sprintf("%.4g", qm/bm), true
	case !f.lower && qm > 0:
		return fmt.Sprintf("%.4g", bm/qm), true
	}
	return "n/a", false
}

// allScalesRun returns the scale workloads that ran, in their order.
func allScalesRun(res *results) []scaleWorkload {
	var ws []scaleWorkload
	for _, sw := range res.scaleOrder {
		if _, ok := res.scale[sw.name]; ok {
			ws = append(ws, sw)
		}
	}
	return ws
}

// printScaleLines prints the scale workloads' machine-readable lines:
// RATIO and SPREAD per comparison, FIGURE <workload> <system> <metric>
// <median> <unit> per figure.
func printScaleLines(out io.Writer, res *results) {
	for _, sw := range allScalesRun(res) {
		order, vals := scaleMedians(res.scale[sw.name])
		for _, p := range sw.pairs {
			r, _ := pairRatio(vals, order, p)
			fmt.Fprintf(out, "RATIO %s %s %s\n", p.name, p.peer, r)
			printSpreadLine(out, p.name, p.peer, roundRatios(res.scale[sw.name], p))
		}
		for _, f := range order {
			fmt.Fprintf(out, "FIGURE %s %s %s %.6g %s\n", sw.name, f.sys, f.metric, median(vals[[2]string{f.sys, f.metric}]), f.unit)
		}
	}
}
