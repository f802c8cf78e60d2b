package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/tether-go/tether/remote"
)

// idleSettle is how long the idle workload waits after the last
// connection is open before it measures: what a system does once, just
// after a connection opens, is over by then, and the figures are those of
// connections that stay idle. A nats-server pings each new client once,
// 2 s after it connected (its ping interval is 2 minutes after that); when
// the CPU was measured from the moment the last connection opened, the
// first pings of however many connections had opened in the 2 s before
// fell into the window, and NATS's idle CPU moved tenfold with the time
// connecting took (87 ms to 1.06 s for 5,000 connections).
const idleSettle = 3 * time.Second

// connectWorkers is how many connections the idle and storm workloads
// open at once: below Tether's default limit of 64 handshakes in progress
// from one address, so that setting up measures connecting, not refusals.
const connectWorkers = 32

// idleOpener opens a server and n idle client connections to it, closing
// them all through td.
type idleOpener func(ctx context.Context, n int, td *teardown) error

// deadPeer15s is the dead-peer detection the "-15s" peers of the idle
// workload are configured for: Tether's default (broker.WithDeadPeerTimeout,
// 15 s, a dialer's link pinged after 7.5 s of silence). gRPC and NATS at
// their defaults do not detect a silent peer that soon (gRPC's ClientConn
// never pings; NATS pings every 2 minutes), so their idle CPU is that of
// links nobody checks. The "-15s" peers check their links as often as
// Tether does, in both directions, which is the fair comparison for
// idle CPU.
const deadPeer15s = 15 * time.Second

// idleSystems are the systems of the idle workload, in the order each
// round measures them.
var idleSystems = []struct {
	sys  string
	open idleOpener
}{
	{"tether", openTetherIdle},
	{"grpc", openGRPCIdle}, {"nats", openNATSIdle},
	{"grpc-15s", openGRPC15sIdle}, {"nats-15s", openNATS15sIdle},
}

// idleConns is the idle workload at n connections: Tether (remote.Client
// to a broker server), gRPC (ClientConn to a grpc.Server) and NATS
// (nats.Conn to an embedded nats-server), one after the other.
func idleConns(n int) scaleWorkload {
	name := fmt.Sprintf("idle-%d", n)
	var pairs []pair
	peers := []string{"grpc", "nats", "grpc-15s", "nats-15s"}
	for _, peer := range peers {
		for _, m := range []string{"heap/conn", "rss/conn", "goroutines/conn", "cpu/10s", "connect"} {
			short, _, _ := strings.Cut(m, "/")
			pairs = append(pairs, pair{name + "-" + short, m, "tether", peer})
		}
	}
	return scaleWorkload{
		name:  name,
		peers: peers,
		pairs: pairs,
		round: func(ctx context.Context, cfg config) ([]figure, error) {
			if err := raiseFileLimit(uint64(2*n + 512)); err != nil {
				return nil, err
			}
			var figs []figure
			base := runtime.NumGoroutine()
			for _, s := range idleSystems {
				// The previous system's goroutines may still be on their
				// way out; counted in the baseline, they would lower this
				// system's figure.
				settle(base, 5*time.Second)
				f, err := measureIdle(ctx, cfg, s.sys, n, s.open)
				figs = append(figs, f...)
				if err != nil {
					return figs, fmt.Errorf("%s: %w", s.sys, err)
				}
			}
			return figs, nil
		},
	}
}

// usage is what the process holds at one moment, after a garbage
// collection.
type usage struct {
	heap       uint64
	rss        int64
	goroutines int
}

// sampleUsage collects garbage, returns freed memory to the system and
// reads the heap, the resident set and the goroutines.
func sampleUsage() (usage, error) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r, err := rss()
	return usage{heap: ms.HeapAlloc, rss: r, goroutines: runtime.NumGoroutine()}, err
}

// measureIdle opens n idle connections with open and measures what they
// cost once they have been open for cfg.idleSettle: heap, RSS and
// goroutines per connection (both sides), the process's CPU time over
// cfg.idleFor of idleness (scaled to 10 s); and the time to connect them
// all.
func measureIdle(ctx context.Context, cfg config, sys string, n int, open idleOpener) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	before, err := sampleUsage()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := open(ctx, n, &td); err != nil {
		return nil, err
	}
	connect := time.Since(start)
	select {
	case <-time.After(cfg.idleSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := sampleUsage()
	if err != nil {
		return nil, err
	}
	cpu0, err := cpuTime()
	if err != nil {
		return nil, err
	}
	select {
	case <-time.After(cfg.idleFor):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	cpu1, err := cpuTime()
	if err != nil {
		return nil, err
	}
	per := func(a, b float64) float64 { return (a - b) / float64(n) }
	return []figure{
		{sys: sys, metric: "heap/conn", value: per(float64(after.heap), float64(before.heap)), unit: "B", lower: true},
		{sys: sys, metric: "rss/conn", value: per(float64(after.rss), float64(before.rss)), unit: "B", lower: true},
		{sys: sys, metric: "goroutines/conn", value: per(float64(after.goroutines), float64(before.goroutines)), unit: "n", lower: true},
		{sys: sys, metric: "cpu/10s", value: secs(cpu1-cpu0) * 10 / cfg.idleFor.Seconds(), unit: "s", lower: true},
		{sys: sys, metric: "connect", value: secs(connect), unit: "s", lower: true},
	}, nil
}

// openTetherIdle starts a broker server and connects n remote.Clients.
func openTetherIdle(ctx context.Context, n int, td *teardown) error {
	srv, err := serveTether(&tetherRoot{sub: &tetherSub{}}, "")
	if err != nil {
		return err
	}
	td.add(srv.close)
	clients := make([]*remote.Client, n)
	defer addAll(td, clients, func(cl *remote.Client) error { return cl.Close() })
	return parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		cl, err := remote.Connect(ctx, "tcp", srv.addr)
		if err != nil {
			return err
		}
		clients[i] = cl
		return cl.WaitConnected(ctx)
	})
}

// openGRPCIdle starts a gRPC server and connects n ClientConns at gRPC's
// defaults, each waiting until it is READY.
func openGRPCIdle(ctx context.Context, n int, td *teardown) error {
	return openGRPCIdleWith(ctx, n, td, nil, nil)
}

// openGRPC15sIdle is openGRPCIdle with keepalives on both sides that find
// a silent peer within deadPeer15s: a ping after 10 s of silence (gRPC's
// least), answered within 5 s.
func openGRPC15sIdle(ctx context.Context, n int, td *teardown) error {
	ka := keepalive.ClientParameters{Time: 10 * time.Second, Timeout: deadPeer15s - 10*time.Second, PermitWithoutStream: true}
	srvOpts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ka.Time, Timeout: ka.Timeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
	return openGRPCIdleWith(ctx, n, td, srvOpts, []grpc.DialOption{grpc.WithKeepaliveParams(ka)})
}

// openGRPCIdleWith is openGRPCIdle with extra server and client options.
func openGRPCIdleWith(ctx context.Context, n int, td *teardown, srvOpts []grpc.ServerOption, dialOpts []grpc.DialOption) error {
	ln, err := listen()
	if err != nil {
		return err
	}
	srv := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(rawCodec{})}, srvOpts...)...)
	srv.RegisterService(&grpcEchoDesc, struct{}{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	td.add(func() error {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	})
	conns := make([]*grpc.ClientConn, n)
	defer addAll(td, conns, (*grpc.ClientConn).Close)
	return parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
			append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)...)
		if err != nil {
			return err
		}
		conns[i] = cc
		cc.Connect()
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				return fmt.Errorf("grpc connection %d: %w", i, ctx.Err())
			}
		}
		return nil
	})
}

// openNATSIdle starts an embedded nats-server and connects n nats.Conns at
// NATS's defaults.
func openNATSIdle(ctx context.Context, n int, td *teardown) error {
	return openNATSIdleWith(ctx, n, td, 0)
}

// openNATS15sIdle is openNATSIdle with the server and every client pinging
// after deadPeer15s/2 of silence and giving up after two unanswered pings,
// so that each side finds a silent peer within about deadPeer15s (a
// nats-server skips its ping to a client it heard from within the
// interval).
func openNATS15sIdle(ctx context.Context, n int, td *teardown) error {
	return openNATSIdleWith(ctx, n, td, deadPeer15s/2)
}

// openNATSIdleWith is openNATSIdle with both sides' ping interval set to
// ping (0: the defaults) and at most two pings unanswered.
func openNATSIdleWith(ctx context.Context, n int, td *teardown, ping time.Duration) error {
	ns, err := startNATSWith(natsserver.RANDOM_PORT, ping)
	if err != nil {
		return err
	}
	td.add(func() error { ns.Shutdown(); ns.WaitForShutdown(); return nil })
	conns := make([]*nats.Conn, n)
	defer addAll(td, conns, func(nc *nats.Conn) error { nc.Close(); return nil })
	return parallel(ctx, n, connectWorkers, func(ctx context.Context, i int) error {
		var opts []nats.Option
		if ping > 0 {
			opts = append(opts, nats.PingInterval(ping), nats.MaxPingsOutstanding(2))
		}
		nc, err := nats.Connect(ns.ClientURL(), opts...)
		conns[i] = nc
		return err
	})
}

// addAll registers the closing of every non-nil element of xs with td.
func addAll[T comparable](td *teardown, xs []T, closeFn func(T) error) {
	var zero T
	td.add(func() error {
		var errs []error
		for _, x := range xs {
			if x != zero {
				errs = append(errs, closeFn(x))
			}
		}
		return errors.Join(errs...)
	})
}

// parallel runs fn(ctx, i) for every i below n on at most workers
// goroutines, stops handing out work at the first error and returns it once
// every goroutine has ended.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
