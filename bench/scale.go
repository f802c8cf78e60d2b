package main

import (
	"context"
	"fmt"
	"time"
)

// The scale workloads measure what the call table cannot: hops through
// relays, one model fanned out to many mirrors, idle connections and a
// reconnect storm. Each round of one runs its systems one after the other
// (tether, peer, tether, peer, … across rounds), and each reports figures
// rather than calls per second.

// A figure is one quantity measured for one system in one round.
type figure struct {
	sys    string
	metric string
	value  float64
	unit   string // "/s", "s", "B", "frac", "n"
	lower  bool   // lower is better (a time or a cost): ratios invert it
}

// A pair names a comparison printed as RATIO <name> <peer> <ratio>: the
// metric of base against the same metric of peer, above 1 when base is
// better.
type pair struct {
	name, metric, base, peer string
}

// A scaleWorkload is one row group of the scale report.
type scaleWorkload struct {
	name  string
	peers []string // the systems compared with Tether, for -only
	pairs []pair
	// round measures every system once, in turn, and returns their figures.
	round func(ctx context.Context, cfg config) ([]figure, error)
}

// allScales lists the scale workloads in the order they run and print.
func allScales(cfg config) []scaleWorkload {
	ws := []scaleWorkload{relayHops()}
	for _, c := range []fanCell{{1, 1}, {100, 10}, {1000, 100}} {
		ws = append(ws, fanout(c))
	}
	ws = append(ws, fanoutRelay(fanCell{1000, 100}))
	for _, n := range cfg.idleConns {
		ws = append(ws, idleConns(n))
	}
	return append(ws, reconnectStorm(cfg.stormClients))
}

// runScale runs every round of sw and records its figures; a failed round
// is recorded as a problem and leaves no figures.
func runScale(sw scaleWorkload, cfg config, res *results) {
	for round := 1; round <= cfg.rounds; round++ {
		progress("round %d/%d  %-22s running", round, cfg.rounds, sw.name)
		ctx, cancel := context.WithTimeout(context.Background(), 3*cfg.waitLimit)
		figs, err := sw.round(ctx, cfg)
		cancel()
		if err != nil {
			res.problems = append(res.problems, fmt.Sprintf("%s (round %d): %v", sw.name, round, err))
			progress("round %d/%d  %-22s FAILED: %v", round, cfg.rounds, sw.name, err)
		}
		for _, f := range figs {
			progress("round %d/%d  %-22s %-8s %-14s %s", round, cfg.rounds, sw.name, f.sys, f.metric, fmtFigure(f.value, f.unit))
		}
		res.scale[sw.name] = append(res.scale[sw.name], figs)
	}
}

// fmtFigure prints a figure's value in its unit.
func fmtFigure(v float64, unit string) string {
	switch unit {
	case "/s":
		return fmtRate(v) + "/s"
	case "s":
		return fmtDur(time.Duration(v * float64(time.Second)))
	case "B":
		return fmt.Sprintf("%.1f KB", v/1000)
	case "frac":
		return fmt.Sprintf("%.1f %%", 100*v)
	}
	return fmt.Sprintf("%.2f", v)
}

// find returns the value of sys's metric among figs.
func find(figs []figure, sys, metric string) (figure, bool) {
	for _, f := range figs {
		if f.sys == sys && f.metric == metric {
			return f, true
		}
	}
	return figure{}, false
}

// roundRatios returns p's ratio in every round where both sides were
// measured, inverted for metrics where lower is better.
func roundRatios(rounds [][]figure, p pair) []float64 {
	var rs []float64
	for _, figs := range rounds {
		b, ok1 := find(figs, p.base, p.metric)
		q, ok2 := find(figs, p.peer, p.metric)
		if !ok1 || !ok2 {
			continue
		}
		switch {
		case b.lower && b.value > 0:
			rs = append(rs, q.value/b.value)
		case !b.lower && q.value > 0:
			rs = append(rs, b.value/q.value)
		}
	}
	return rs
}

// secs converts d to the seconds a figure holds.
func secs(d time.Duration) float64 { return d.Seconds() }
