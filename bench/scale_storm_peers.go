package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// The reconnect storm of the peers: the same outage (every client
// connected, the server stopped, started again on the same address once
// every client saw it) with each peer's own reconnecting client at its
// default settings.

// stormFigures turns the times at which each client was connected again
// and made its first call, counted from the restart, into the storm's
// figures for sys.
func stormFigures(sys string, connected, called []time.Duration) []figure {
	return []figure{
		{sys: sys, metric: "connected-p50", value: secs(median(connected)), unit: "s", lower: true},
		{sys: sys, metric: "all-connected", value: secs(slices.Max(connected)), unit: "s", lower: true},
		{sys: sys, metric: "all-calls-ok", value: secs(slices.Max(called)), unit: "s", lower: true},
	}
}

// serveGRPCStorm serves the echo service on a loopback listener at addr
// ("" for a new port) and returns the address and how to stop it.
func serveGRPCStorm(addr string) (string, func() error, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen: %w", err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	srv.RegisterService(&grpcEchoDesc, struct{}{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return ln.Addr().String(), func() error {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}, nil
}

// grpcStormRound is the storm for gRPC: n ClientConns, each READY and with
// one call made. A ClientConn that lost its connection goes IDLE and dials
// again only when asked; each is asked (Connect) as soon as it left READY,
// so that it redials through the outage as Tether's and NATS's clients do,
// with gRPC's connection backoff.
func grpcStormRound(ctx context.Context, cfg config, n int) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	addr, stop, err := serveGRPCStorm("")
	if err != nil {
		return nil, err
	}
	conns := make([]*grpc.ClientConn, n)
	defer addAll(&td, conns, (*grpc.ClientConn).Close)
	err = parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		cc, err := grpc.NewClient("passthrough:///"+addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			return err
		}
		conns[i] = cc
		return grpcStormCall(ctx, cc)
	})
	if err := errors.Join(err, stop()); err != nil {
		return nil, err
	}
	err = parallel(ctx, n, n, func(ctx context.Context, i int) error {
		if !conns[i].WaitForStateChange(ctx, connectivity.Ready) {
			return fmt.Errorf("grpc connection %d did not see the outage: %w", i, ctx.Err())
		}
		conns[i].Connect()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, stop, err = serveGRPCStorm(addr); err != nil {
		return nil, fmt.Errorf("restart on %s: %w", addr, err)
	}
	td.add(stop)
	return grpcStormRecovery(ctx, cfg, conns)
}

// grpcStormCall makes one echo call on cc, waiting for it to be READY.
func grpcStormCall(ctx context.Context, cc *grpc.ClientConn) error {
	in, out := []byte("x"), []byte(nil)
	return cc.Invoke(ctx, grpcEcho, &in, &out, grpc.WaitForReady(true))
}

// grpcStormRecovery waits, for every connection at once, until it is READY
// and a call on it succeeded.
func grpcStormRecovery(ctx context.Context, cfg config, conns []*grpc.ClientConn) ([]figure, error) {
	return stormRecoveryOf(ctx, cfg, "grpc", len(conns),
		func(ctx context.Context, i int) (time.Time, error) {
			cc := conns[i]
			for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
				if !cc.WaitForStateChange(ctx, s) {
					return time.Time{}, fmt.Errorf("grpc connection %d (%v): %w", i, s, ctx.Err())
				}
			}
			return time.Now(), nil
		},
		func(ctx context.Context, i int) error {
			if err := grpcStormCall(ctx, conns[i]); err != nil {
				return fmt.Errorf("grpc connection %d: call: %w", i, err)
			}
			return nil
		})
}

// natsStormClient is one nats.Conn of the storm, with when it reconnected.
type natsStormClient struct {
	nc   *nats.Conn
	back chan time.Time // receives the time of its reconnection
}

// natsStormRound is the storm for NATS: n nats.Conns (default options:
// reconnecting every 2 s, jittered by up to 100 ms) to an embedded
// nats-server, which is shut down and started again on the same port.
func natsStormRound(ctx context.Context, cfg config, n int) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	ns, err := startNATSAt(natsserver.RANDOM_PORT)
	if err != nil {
		return nil, err
	}
	port := ns.Addr().(*net.TCPAddr).Port
	down := make(chan struct{}, n)
	clients := make([]natsStormClient, n)
	defer addAll(&td, clients, func(c natsStormClient) error { c.nc.Close(); return nil })
	err = parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		back := make(chan time.Time, 1)
		nc, err := nats.Connect(ns.ClientURL(),
			// Neither handler may block nats's callback goroutine: a
			// send that finds the buffer full (the teardown's
			// disconnects, a second reconnection) is dropped.
			nats.DisconnectErrHandler(func(*nats.Conn, error) { trySend(down, struct{}{}) }),
			nats.ReconnectHandler(func(*nats.Conn) { trySend(back, time.Now()) }))
		if err != nil {
			return err
		}
		clients[i] = natsStormClient{nc: nc, back: back}
		return nc.FlushWithContext(ctx)
	})
	ns.Shutdown()
	ns.WaitForShutdown()
	if err != nil {
		return nil, err
	}
	for range n {
		select {
		case <-down:
		case <-ctx.Done():
			return nil, fmt.Errorf("nats clients that saw the outage: %w", ctx.Err())
		}
	}
	if ns, err = startNATSAt(port); err != nil {
		return nil, fmt.Errorf("restart on port %d: %w", port, err)
	}
	td.add(func() error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
	return natsStormRecovery(ctx, cfg, clients)
}

// natsStormRecovery waits, for every client at once, until it reconnected
// and a round trip to the server (Flush) succeeded.
func natsStormRecovery(ctx context.Context, cfg config, clients []natsStormClient) ([]figure, error) {
	return stormRecoveryOf(ctx, cfg, "nats", len(clients),
		func(ctx context.Context, i int) (time.Time, error) {
			select {
			case at := <-clients[i].back:
				return at, nil
			case <-ctx.Done():
				return time.Time{}, fmt.Errorf("nats client %d did not reconnect: %w", i, ctx.Err())
			}
		},
		func(ctx context.Context, i int) error {
			if err := clients[i].nc.FlushWithContext(ctx); err != nil {
				return fmt.Errorf("nats client %d: flush: %w", i, err)
			}
			return nil
		})
}

// trySend sends v on ch unless ch is full.
func trySend[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}
