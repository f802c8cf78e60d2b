package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/remote"
)

// reconnectStorm is the reconnect storm at n clients: n remote.Clients
// (default options) connected to one server, which is closed and started
// again on the same address; it measures how long until every client is
// connected again and a call through each of them succeeds. Tether only.
func reconnectStorm(n int) scaleWorkload {
	return scaleWorkload{name: fmt.Sprintf("storm-%d", n), round: func(ctx context.Context, cfg config) ([]figure, error) {
		return stormRound(ctx, cfg, n)
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
	if err := errors.Join(err, srv.close()); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, cfg.waitLimit, func() bool { return down.Load() == int64(n) }); err != nil {
		return nil, fmt.Errorf("clients that saw the outage: %d of %d: %w", down.Load(), n, err)
	}
	again, err := serveTether(reg, srv.addr)
	if err != nil {
		return nil, fmt.Errorf("restart on %s: %w", srv.addr, err)
	}
	td.add(again.close)
	return stormRecovery(ctx, cfg, clients)
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
// then until a call through its reference succeeds, and returns the times
// from now: the median and the last client connected, the last call.
func stormRecovery(ctx context.Context, cfg config, clients []stormClient) ([]figure, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.waitLimit)
	defer cancel()
	start := time.Now()
	connected := make([]time.Duration, len(clients))
	called := make([]time.Duration, len(clients))
	err := parallel(ctx, len(clients), len(clients), func(ctx context.Context, i int) error {
		if err := clients[i].cl.WaitConnected(ctx); err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		connected[i] = time.Since(start)
		var out []byte
		if err := clients[i].ref.Call(remote.WaitForLink(ctx), "Echo", &out, []byte("x")); err != nil {
			return fmt.Errorf("client %d: call: %w", i, err)
		}
		called[i] = time.Since(start)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return []figure{
		{sys: "tether", metric: "connected-p50", value: secs(median(connected)), unit: "s", lower: true},
		{sys: "tether", metric: "all-connected", value: secs(slices.Max(connected)), unit: "s", lower: true},
		{sys: "tether", metric: "all-calls-ok", value: secs(slices.Max(called)), unit: "s", lower: true},
	}, nil
}
