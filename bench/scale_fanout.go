package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/registry"
)

// fanKeys is how many distinct keys the fan-out writer cycles through.
const fanKeys = 1000

// A fanCell is one fan-out configuration: mirrors (or subscribers) spread
// evenly over connections.
type fanCell struct{ mirrors, conns int }

// name is the cell's part of workload names, mirrors x connections.
func (c fanCell) name() string { return fmt.Sprintf("%dx%d", c.mirrors, c.conns) }

// fanSource is the manager that hands out the fan-out model.
type fanSource struct{ m *cache.Map[int, int] }

// Model returns the model, which reaches the caller as a mirror.
func (f *fanSource) Model(ctx context.Context) (*cache.Map[int, int], error) { return f.m, nil }

// fanout is one fan-out cell: one cache.Map written W times and mirrored
// M times on C connections, against NATS core pub/sub with one publisher
// and M subscribers on C connections.
func fanout(c fanCell) scaleWorkload {
	n := "fanout-" + c.name()
	return scaleWorkload{
		name:  n,
		peers: []string{"nats"},
		pairs: []pair{
			{n + "-writer", "writer", "tether", "nats"},
			{n + "-last", "last", "tether", "nats"},
			{n + "-delivered", "delivered", "tether", "nats"},
		},
		round: func(ctx context.Context, cfg config) ([]figure, error) {
			t, err := tetherFanout(ctx, cfg, c, false)
			if err != nil {
				return t, fmt.Errorf("tether: %w", err)
			}
			n, err := natsFanout(ctx, cfg, c)
			if err != nil {
				return append(t, n...), fmt.Errorf("nats: %w", err)
			}
			return append(t, n...), nil
		},
	}
}

// fanoutRelay is the fan-out cell with every mirror behind one relay, so
// that the model itself has a single subscriber. Tether only.
func fanoutRelay(c fanCell) scaleWorkload {
	return scaleWorkload{
		name: "fanout-relay-" + c.name(),
		round: func(ctx context.Context, cfg config) ([]figure, error) {
			return tetherFanout(ctx, cfg, c, true)
		},
	}
}

// tetherFanout measures one Tether fan-out round: writer rate, time until
// every mirror holds the last version, and the share of changes the mirrors'
// no-op watchers saw as Changed events.
func tetherFanout(ctx context.Context, cfg config, c fanCell, viaRelay bool) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	m := cache.NewMap[int, int]()
	reg := registry.New()
	if err := reg.Register("fan", &fanSource{m: m}); err != nil {
		return nil, err
	}
	srv, err := serveTether(reg, "")
	if err != nil {
		return nil, err
	}
	td.add(srv.close)
	addr := srv.addr
	if viaRelay {
		up, err := connectClient(ctx, addr, &td)
		if err != nil {
			return nil, err
		}
		relay, err := serveTether(up.Registry(), "")
		if err != nil {
			return nil, err
		}
		td.add(relay.close)
		addr = relay.addr
	}
	mirrors, events, err := openMirrors(ctx, addr, c, &td)
	if err != nil {
		return nil, err
	}
	target := m.Version() + uint64(cfg.fanSets)
	start := time.Now()
	for i := range cfg.fanSets {
		if err := m.Set(i%fanKeys, i); err != nil {
			return nil, fmt.Errorf("set %d: %w", i, err)
		}
	}
	writer := time.Since(start)
	err = waitFor(ctx, cfg.waitLimit, allAt(mirrors, target))
	last := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("mirrors at version %d: %d of %d (%s): %w", target, countAt(mirrors, target), len(mirrors), behind(mirrors, target), err)
	}
	delivered := settledShare(ctx, events, cfg.fanSets)
	return fanFigures("tether", cfg.fanSets, writer, last, delivered), nil
}

// openMirrors dials c.conns connections to addr and takes c.mirrors mirrors
// of the "fan" model over them, each with a no-op watcher counting events.
func openMirrors(ctx context.Context, addr string, c fanCell, td *teardown) ([]*cache.Mirror[int, int], []*atomic.Int64, error) {
	var mirrors []*cache.Mirror[int, int]
	var events []*atomic.Int64
	for i := range c.conns {
		conn, err := broker.Dial(ctx, "tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %d: %w", i, err)
		}
		td.add(func() error { conn.Close(); <-conn.Done(); return nil })
		ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "fan")
		if err != nil {
			return nil, nil, fmt.Errorf("lookup: %w", err)
		}
		for j := i; j < c.mirrors; j += c.conns {
			var mir *cache.Mirror[int, int]
			if err := ref.Call(ctx, "Model", &mir); err != nil {
				return nil, nil, fmt.Errorf("mirror %d: %w", j, err)
			}
			td.add(mir.Close)
			n := new(atomic.Int64)
			mir.Changed.Connect(func(cache.Change[int, int]) { n.Add(1) })
			mirrors, events = append(mirrors, mir), append(events, n)
		}
	}
	return mirrors, events, nil
}

// allAt returns a condition that holds once every mirror holds version v.
// It keeps a cursor over the mirrors (one at v stays there), so that each
// poll reads one mirror or a few rather than all of them while the
// measured mirrors compete for the same cores.
func allAt(mirrors []*cache.Mirror[int, int], v uint64) func() bool {
	next := 0
	return func() bool {
		for next < len(mirrors) && mirrors[next].Version() >= v {
			next++
		}
		return next == len(mirrors)
	}
}

// behind describes the mirrors below version v: the lowest version among
// them, how many report Stale and the first error one reports.
func behind(mirrors []*cache.Mirror[int, int], v uint64) string {
	lowest, stale := v, 0
	var firstErr error
	for _, m := range mirrors {
		if m.Version() >= v {
			continue
		}
		lowest = min(lowest, m.Version())
		if m.Stale() {
			stale++
		}
		if err := m.Err(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return fmt.Sprintf("those behind: lowest version %d, %d stale, first error %s", lowest, stale, withCauses(firstErr))
}

// withCauses is err's text followed by the text of the errors it wraps
// that its own text does not repeat: a mirror's ErrSourceLost names what
// happened but not why the connection ended (a keepalive timeout, say),
// which is its cause.
func withCauses(err error) string {
	if err == nil {
		return "<nil>"
	}
	msg := err.Error()
	var wrapped []error
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		wrapped = u.Unwrap()
	case interface{ Unwrap() error }:
		wrapped = []error{u.Unwrap()}
	}
	for _, e := range wrapped {
		if e != nil && !strings.Contains(msg, e.Error()) {
			msg += " (cause: " + e.Error() + ")"
		}
	}
	return msg
}

// countAt counts the mirrors that hold version v or later.
func countAt(mirrors []*cache.Mirror[int, int], v uint64) int {
	n := 0
	for _, m := range mirrors {
		if m.Version() >= v {
			n++
		}
	}
	return n
}

// natsFanout measures one NATS round: publish rate, time until every
// subscriber received the last message, and the share of messages received.
func natsFanout(ctx context.Context, cfg config, c fanCell) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	ns, err := startNATS()
	if err != nil {
		return nil, err
	}
	td.add(func() error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
	counts, lasts, err := natsSubscribers(ns.ClientURL(), c, cfg.fanSets, &td)
	if err != nil {
		return nil, err
	}
	pub, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	td.add(func() error { pub.Close(); return nil })
	msg := make([]byte, 16)
	start := time.Now()
	for i := range cfg.fanSets {
		binary.BigEndian.PutUint64(msg, uint64(i))
		if err := pub.Publish("fan", msg); err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	writer := time.Since(start)
	if err := pub.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	err = waitFor(ctx, cfg.waitLimit, func() bool { return lasts.Load() == int64(c.mirrors) })
	last := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("subscribers with the last message: %d of %d: %w", lasts.Load(), c.mirrors, err)
	}
	delivered := settledShare(ctx, counts, cfg.fanSets)
	return fanFigures("nats", cfg.fanSets, writer, last, delivered), nil
}

// natsSubscribers opens c.conns connections with c.mirrors subscriptions
// to "fan" spread over them; each counts its messages, and lasts counts the
// subscriptions that received message w-1.
func natsSubscribers(url string, c fanCell, w int, td *teardown) ([]*atomic.Int64, *atomic.Int64, error) {
	lasts := new(atomic.Int64)
	counts := make([]*atomic.Int64, 0, c.mirrors)
	for i := range c.conns {
		nc, err := nats.Connect(url)
		if err != nil {
			return nil, nil, fmt.Errorf("subscriber connection %d: %w", i, err)
		}
		td.add(func() error { nc.Close(); return nil })
		for j := i; j < c.mirrors; j += c.conns {
			n := new(atomic.Int64)
			_, err := nc.Subscribe("fan", func(m *nats.Msg) {
				n.Add(1)
				if len(m.Data) >= 8 && binary.BigEndian.Uint64(m.Data) == uint64(w-1) {
					lasts.Add(1)
				}
			})
			if err != nil {
				return nil, nil, fmt.Errorf("subscribe %d: %w", j, err)
			}
			counts = append(counts, n)
		}
		if err := nc.Flush(); err != nil {
			return nil, nil, fmt.Errorf("subscriber connection %d: flush: %w", i, err)
		}
	}
	return counts, lasts, nil
}

// fanFigures names one system's three fan-out figures.
func fanFigures(sys string, w int, writer, last time.Duration, delivered float64) []figure {
	return []figure{
		{sys: sys, metric: "writer", value: float64(w) / writer.Seconds(), unit: "/s"},
		{sys: sys, metric: "last", value: secs(last), unit: "s", lower: true},
		{sys: sys, metric: "delivered", value: delivered, unit: "frac"},
	}
}

// settledShare waits until the counters reach w each or stop moving for
// 200 ms (at most 10 s), then returns their total as a share of w per
// counter: the events a receiver saw out of the changes made.
func settledShare(ctx context.Context, counts []*atomic.Int64, w int) float64 {
	total := func() int64 {
		var t int64
		for _, c := range counts {
			t += c.Load()
		}
		return t
	}
	want := int64(w) * int64(len(counts))
	prev, still := total(), time.Now()
	waitFor(ctx, 10*time.Second, func() bool {
		t := total()
		if t != prev {
			prev, still = t, time.Now()
		}
		return t >= want || time.Since(still) > 200*time.Millisecond
	})
	return float64(total()) / float64(want)
}

// errWaitTimeout says a wait for a workload to complete ran out of time.
var errWaitTimeout = errors.New("not reached within the wait limit")

// waitFor polls cond every millisecond until it holds, limit has passed
// (errWaitTimeout) or ctx is done.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", limit, errWaitTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
