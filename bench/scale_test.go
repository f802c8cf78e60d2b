package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
)

// scaleCfg is a configuration small enough for CI.
var scaleCfg = config{
	rounds: 1, warmup: 20 * time.Millisecond, duration: 100 * time.Millisecond, callTimeout: 5 * time.Second,
	fanSets: 300, idleFor: 100 * time.Millisecond, stormClients: 20, waitLimit: 20 * time.Second,
}

// testCtx is a context bounded well within the test binary's timeout.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustFind returns sys's metric among figs or fails the test.
func mustFind(t *testing.T, figs []figure, sys, metric string) float64 {
	t.Helper()
	f, ok := find(figs, sys, metric)
	if !ok {
		t.Fatalf("no %s figure for %s in %+v", metric, sys, figs)
	}
	return f.value
}

func TestRelayHops(t *testing.T) {
	leakcheck.Check(t)
	figs, err := relayRound(testCtx(t), scaleCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sys := range []string{"direct", "1-relay", "2-relays"} {
		if r := mustFind(t, figs, sys, "calls/s"); r <= 0 {
			t.Errorf("%s: %v calls/s", sys, r)
		}
		if p := mustFind(t, figs, sys, "p50"); p <= 0 {
			t.Errorf("%s: p50 %v", sys, p)
		}
	}
	mustFind(t, figs, "1-relay", "p50-added")
	mustFind(t, figs, "2-relays", "p50-added")
}

func TestFanout(t *testing.T) {
	leakcheck.Check(t)
	c := fanCell{mirrors: 10, conns: 3}
	for _, run := range []struct {
		sys string
		fn  func() ([]figure, error)
	}{
		{"tether", func() ([]figure, error) { return tetherFanout(testCtx(t), scaleCfg, c, false) }},
		{"tether", func() ([]figure, error) { return tetherFanout(testCtx(t), scaleCfg, c, true) }},
		{"nats", func() ([]figure, error) { return natsFanout(testCtx(t), scaleCfg, c) }},
	} {
		figs, err := run.fn()
		if err != nil {
			t.Fatalf("%s: %v", run.sys, err)
		}
		if w := mustFind(t, figs, run.sys, "writer"); w <= 0 {
			t.Errorf("%s: writer %v/s", run.sys, w)
		}
		if l := mustFind(t, figs, run.sys, "last"); l <= 0 {
			t.Errorf("%s: last after %v s", run.sys, l)
		}
		// Every receiver holds the last change, so each saw at least one
		// event, and none can see more events than changes.
		if d := mustFind(t, figs, run.sys, "delivered"); d < 1.0/float64(scaleCfg.fanSets) || d > 1 {
			t.Errorf("%s: delivered %v", run.sys, d)
		}
	}
}

func TestIdleConns(t *testing.T) {
	leakcheck.Check(t)
	for _, s := range idleSystems {
		sys := s.sys
		figs, err := measureIdle(testCtx(t), scaleCfg, sys, 20, s.open)
		if err != nil {
			t.Fatalf("%s: %v", sys, err)
		}
		// Each connection has at least one goroutine on one side or the
		// other, and holds some heap.
		if g := mustFind(t, figs, sys, "goroutines/conn"); g < 1 {
			t.Errorf("%s: %v goroutines per connection", sys, g)
		}
		if h := mustFind(t, figs, sys, "heap/conn"); h <= 0 {
			t.Errorf("%s: %v heap bytes per connection", sys, h)
		}
		mustFind(t, figs, sys, "cpu/10s")
		if c := mustFind(t, figs, sys, "connect"); c <= 0 {
			t.Errorf("%s: connected in %v s", sys, c)
		}
	}
}

func TestReconnectStorm(t *testing.T) {
	leakcheck.Check(t)
	figs, err := stormRound(testCtx(t), scaleCfg, scaleCfg.stormClients)
	if err != nil {
		t.Fatal(err)
	}
	p50, all := mustFind(t, figs, "tether", "connected-p50"), mustFind(t, figs, "tether", "all-connected")
	calls := mustFind(t, figs, "tether", "all-calls-ok")
	if p50 <= 0 || all < p50 || calls < all {
		t.Errorf("connected p50 %v s, all %v s, calls %v s: not in order", p50, all, calls)
	}
	if dials := mustFind(t, figs, "tether", "dials/client"); dials < 1 {
		t.Errorf("%v dial attempts per client from the outage until all were back, want at least 1", dials)
	}
	if o := mustFind(t, figs, "tether", "outage"); o <= 0 {
		t.Errorf("outage %v s", o)
	}
	mustFind(t, figs, "tether", "turned-away")
}

// TestReconnectStormPeers: the storm of each peer brings every client
// back and reports its times in order.
func TestReconnectStormPeers(t *testing.T) {
	leakcheck.Check(t)
	for _, s := range []struct {
		sys   string
		storm func(context.Context, config, int) ([]figure, error)
	}{{"grpc", grpcStormRound}, {"nats", natsStormRound}} {
		figs, err := s.storm(testCtx(t), scaleCfg, 5)
		if err != nil {
			t.Fatalf("%s: %v", s.sys, err)
		}
		p50, all := mustFind(t, figs, s.sys, "connected-p50"), mustFind(t, figs, s.sys, "all-connected")
		if calls := mustFind(t, figs, s.sys, "all-calls-ok"); p50 <= 0 || all < p50 || calls < all {
			t.Errorf("%s: connected p50 %v s, all %v s, calls %v s: not in order", s.sys, p50, all, calls)
		}
	}
}

func TestRoundRatiosInvertCosts(t *testing.T) {
	rounds := [][]figure{
		{{sys: "tether", metric: "rate", value: 200}, {sys: "peer", metric: "rate", value: 100},
			{sys: "tether", metric: "time", value: 4, lower: true}, {sys: "peer", metric: "time", value: 2, lower: true}},
		{{sys: "tether", metric: "rate", value: 300}, {sys: "peer", metric: "rate", value: 100}},
	}
	if got := roundRatios(rounds, pair{"x", "rate", "tether", "peer"}); !slices.Equal(got, []float64{2, 3}) {
		t.Errorf("rate ratios %v, want [2 3]", got)
	}
	if got := roundRatios(rounds, pair{"x", "time", "tether", "peer"}); !slices.Equal(got, []float64{0.5}) {
		t.Errorf("time ratios %v, want [0.5] (half as fast, one round measured)", got)
	}
}

func TestWaitForTimesOut(t *testing.T) {
	err := waitFor(context.Background(), 20*time.Millisecond, func() bool { return false })
	if !errors.Is(err, errWaitTimeout) {
		t.Errorf("waitFor: %v, want errWaitTimeout", err)
	}
}

func TestSelection(t *testing.T) {
	cfg := config{idleConns: []int{7}, stormClients: 3}
	names := func(ws []scaleWorkload) (ns []string) {
		for _, w := range ws {
			ns = append(ns, w.name)
		}
		return ns
	}
	cfg.only = "fanout"
	_, wls, allocs, scales := selection(cfg)
	if len(wls) != 0 || allocs || !slices.Equal(names(scales), []string{"fanout-1x1", "fanout-100x10", "fanout-1000x100", "fanout-relay-1000x100"}) {
		t.Errorf("-only fanout: %d call workloads, allocs %v, scale %v", len(wls), allocs, names(scales))
	}
	cfg.only = "nats"
	_, _, _, scales = selection(cfg)
	if !slices.Equal(names(scales), []string{"fanout-1x1", "fanout-100x10", "fanout-1000x100", "idle-7", "storm-3"}) {
		t.Errorf("-only nats: scale %v", names(scales))
	}
	cfg.only = "storm"
	if _, _, _, scales = selection(cfg); !slices.Equal(names(scales), []string{"storm-3"}) {
		t.Errorf("-only storm: scale %v", names(scales))
	}
}

// TestWithCausesNamesWhyAMirrorLostItsSource checks that a fan-out round
// that fails says why a mirror lost its source: ErrSourceLost's text names
// what happened, and only its cause says why the connection ended.
func TestWithCausesNamesWhyAMirrorLostItsSource(t *testing.T) {
	cause := errors.New("peer stopped answering keepalives: keepalive timeout")
	got := withCauses(feed.Lost("its connection ended", cause))
	want := "tether: mirror lost its source: its connection ended (cause: peer stopped answering keepalives: keepalive timeout)"
	if got != want {
		t.Fatalf("withCauses = %q, want %q", got, want)
	}
	if got := withCauses(nil); got != "<nil>" {
		t.Fatalf("withCauses(nil) = %q", got)
	}
	if got := withCauses(fmt.Errorf("a: %w", cause)); got != "a: "+cause.Error() {
		t.Fatalf("withCauses repeats a cause its text holds: %q", got)
	}
}
