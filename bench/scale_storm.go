package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/remote"
)

// reconnectStorm is the reconnect storm at n clients: n clients connected
// to one server, which is closed and started again on the same address;
// it measures how long until every client is connected again and a call
// through each of them succeeds. Tether's clients are remote.Clients
// (default options), which also report the outage's length, the dial
// attempts per client and how many the server turned away over its
// handshake limits (a herd of clients coming back at once); gRPC's and
// NATS's are theirs at their defaults. The systems take turns in each
// round.
func reconnectStorm(n int) scaleWorkload {
	name := fmt.Sprintf("storm-%d", n)
	var pairs []pair
	for _, peer := range []string{"grpc", "nats"} {
		for _, m := range []string{"connected-p50", "all-connected", "all-calls-ok"} {
			pairs = append(pairs, pair{name + "-" + m, m, "tether", peer})
		}
	}
	return scaleWorkload{name: name, peers: []string{"grpc", "nats"}, pairs: pairs,
		round: func(ctx context.Context, cfg config) ([]figure, error) {
			var figs []figure
			base := runtime.NumGoroutine()
			for _, s := range []struct {
				sys   string
				storm func(context.Context, config, int) ([]figure, error)
			}{{"tether", stormRound}, {"grpc", grpcStormRound}, {"nats", natsStormRound}} {
				settle(base, 5*time.Second) // the previous system's goroutines on their way out
				f, err := s.storm(ctx, cfg, n)
				figs = append(figs, f...)
				if err != nil {
					return figs, fmt.Errorf("%s: %w", s.sys, err)
				}
			}
			return figs, nil
		}}
}

// stormClient is one client of the storm with the reference it calls.
type stormClient struct {
	cl  *remote.Client
	ref *remote.Ref
}

// stormRound runs one storm: connect, close the server, wait until every
// client saw the outage, restart the server, wait until all are back.
func stormRound(ctx context.Context, cfg config, n int) (figs []figure, err error) {
	if err := raiseFileLimit(uint64(2*n + 512)); err != nil {
		return nil, err
	}
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	reg, err := echoRegistry()
	if err != nil {
		return nil, err
	}
	srv, err := serveTether(reg, "")
	if err != nil {
		return nil, err
	}
	var down atomic.Int64
	clients, err := stormClients(ctx, srv.addr, n, &down, &td)
	// The outage: the server closes here, whether or not the clients
	// all connected (the teardown then closes those that did).
	closed := time.Now()
	if err := errors.Join(err, srv.close()); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, cfg.waitLimit, func() bool { return down.Load() == int64(n) }); err != nil {
		return nil, fmt.Errorf("clients that saw the outage: %d of %d: %w", down.Load(), n, err)
	}
	outage := time.Since(closed)
	dials := dialAttempts(clients)
	again, err := serveTether(reg, srv.addr)
	if err != nil {
		return nil, fmt.Errorf("restart on %s: %w", srv.addr, err)
	}
	td.add(again.close)
	if figs, err = stormRecovery(ctx, cfg, clients); err != nil {
		return figs, err
	}
	return append(figs,
		figure{sys: "tether", metric: "outage", value: secs(outage), unit: "s", lower: true},
		figure{sys: "tether", metric: "dials/client", value: float64(dialAttempts(clients)-dials) / float64(n), unit: "n", lower: true},
		figure{sys: "tether", metric: "turned-away", value: float64(again.srv.Stats().Refused), unit: "n", lower: true},
	), nil
}

// dialAttempts is the dial attempts every client made so far, failed or
// not.
func dialAttempts(clients []stormClient) int64 {
	var n int64
	for _, c := range clients {
		st := c.cl.Stats()
		n += st.Connects + st.DialFailures
	}
	return n
}

// stormClients connects n clients to addr, looks up "echo" through each and
// calls it once; down counts the Disconnected signals they emit.
func stormClients(ctx context.Context, addr string, n int, down *atomic.Int64, td *teardown) ([]stormClient, error) {
	clients := make([]stormClient, n)
	defer td.add(func() error {
		var errs []error
		for _, c := range clients {
			if c.cl != nil {
				errs = append(errs, c.cl.Close())
			}
		}
		return errors.Join(errs...)
	})
	return clients, parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		cl, err := remote.Connect(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		clients[i].cl = cl
		cl.Disconnected.Connect(func(error) { down.Add(1) })
		if err := cl.WaitConnected(ctx); err != nil {
			return err
		}
		if clients[i].ref, err = cl.Registry().Lookup(ctx, "echo"); err != nil {
			return err
		}
		var out []byte
		return clients[i].ref.Call(ctx, "Echo", &out, []byte("x"))
	})
}

// stormRecovery waits, for every client at once, until it is connected and
// then until a call through its reference succeeds (stormRecoveryOf).
func stormRecovery(ctx context.Context, cfg config, clients []stormClient) ([]figure, error) {
	return stormRecoveryOf(ctx, cfg, "tether", len(clients),
		func(ctx context.Context, i int) (time.Time, error) {
			if err := clients[i].cl.WaitConnected(ctx); err != nil {
				return time.Time{}, fmt.Errorf("client %d: %w", i, err)
			}
			return time.Now(), nil
		},
		func(ctx context.Context, i int) error {
			var out []byte
			if err := clients[i].ref.Call(remote.WaitForLink(ctx), "Echo", &out, []byte("x")); err != nil {
				return fmt.Errorf("client %d: call: %w", i, err)
			}
			return nil
		})
}

// stormRecoveryOf waits, for each of n clients of sys at once, until it is
// connected (connected returns when it was) and then until a call through
// it succeeds, all within cfg.waitLimit, and returns the times from now:
// the median and the last client connected, the last call.
func stormRecoveryOf(ctx context.Context, cfg config, sys string, n int,
	connected func(ctx context.Context, i int) (time.Time, error), call func(ctx context.Context, i int) error) ([]figure, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.waitLimit)
	defer cancel()
	start := time.Now()
	back := make([]time.Duration, n)
	called := make([]time.Duration, n)
	err := parallel(ctx, n, n, func(ctx context.Context, i int) error {
		at, err := connected(ctx, i)
		if err != nil {
			return err
		}
		back[i] = at.Sub(start)
		if err := call(ctx, i); err != nil {
			return err
		}
		called[i] = time.Since(start)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return stormFigures(sys, back, called), nil
}
