package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
)

// tetherServer is a broker server serving a loopback listener.
type tetherServer struct {
	srv  *broker.Server
	ln   net.Listener
	addr string
	done chan error
}

// serveTether publishes root on a new loopback listener (or on addr, when
// given: a server restarted on the same address).
func serveTether(root any, addr string, opts ...broker.Option) (*tetherServer, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &tetherServer{srv: broker.NewServer(root, opts...), ln: ln, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// close stops the server and waits for Serve to return.
func (s *tetherServer) close() error {
	s.srv.Close()
	if err := <-s.done; err != nil && !errors.Is(err, broker.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// teardown closes what a workload opened, last opened first.
type teardown []func() error

// add remembers fn to be run by run.
func (t *teardown) add(fn func() error) { *t = append(*t, fn) }

// run runs every closer in reverse order and joins their errors.
func (t *teardown) run() error {
	var errs []error
	for i := len(*t) - 1; i >= 0; i-- {
		errs = append(errs, (*t)[i]())
	}
	*t = nil
	return errors.Join(errs...)
}

// echoRegistry is a registry publishing one echo object as "echo".
func echoRegistry() (*registry.Registry, error) {
	reg := registry.New()
	if err := reg.Register("echo", &tetherSub{}); err != nil {
		return nil, err
	}
	return reg, nil
}

// connectClient connects a remote.Client to addr and waits for its link.
func connectClient(ctx context.Context, addr string, td *teardown, opts ...remote.Option) (*remote.Client, error) {
	cl, err := remote.Connect(ctx, "tcp", addr, opts...)
	if err != nil {
		return nil, err
	}
	td.add(cl.Close)
	if err := cl.WaitConnected(ctx); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return cl, nil
}

// relayHops is the relay workload: a 64 B echo at one caller, direct and
// through one and two relays (server → relay → relay → client), each relay
// a remote.Client's registry published by broker.NewServer.
func relayHops() scaleWorkload {
	return scaleWorkload{
		name: "relay-hops",
		pairs: []pair{
			{"relay-1hop", "calls/s", "1-relay", "direct"},
			{"relay-2hops", "calls/s", "2-relays", "direct"},
		},
		round: relayRound,
	}
}

// relayRound builds the chain and measures the three ways in, one after
// the other.
func relayRound(ctx context.Context, cfg config) (figs []figure, err error) {
	var td teardown
	defer func() { err = errors.Join(err, td.run()) }()
	addrs, err := relayChain(ctx, &td)
	if err != nil {
		return nil, err
	}
	names := []string{"direct", "1-relay", "2-relays"}
	var prev time.Duration
	for i, addr := range addrs {
		cl, err := connectClient(ctx, addr, &td)
		if err != nil {
			return nil, err
		}
		ref, err := cl.Registry().Lookup(ctx, "echo")
		if err != nil {
			return nil, fmt.Errorf("%s: lookup: %w", names[i], err)
		}
		var out []byte
		r := measureCalls(func(ctx context.Context, _ int, in []byte) ([]byte, error) {
			err := ref.Call(ctx, "Echo", &out, in)
			return out, err
		}, 64, 1, cfg)
		if r.err != nil {
			return figs, fmt.Errorf("%s: %w", names[i], r.err)
		}
		figs = append(figs,
			figure{sys: names[i], metric: "calls/s", value: r.rate, unit: "/s"},
			figure{sys: names[i], metric: "p50", value: secs(r.p50), unit: "s", lower: true})
		if i > 0 {
			figs = append(figs, figure{sys: names[i], metric: "p50-added", value: secs(r.p50 - prev), unit: "s", lower: true})
		}
		prev = r.p50
	}
	return figs, nil
}

// relayChain starts the server and two relays in a chain and returns the
// addresses of the server, the first relay and the second.
func relayChain(ctx context.Context, td *teardown) ([]string, error) {
	reg, err := echoRegistry()
	if err != nil {
		return nil, err
	}
	srv, err := serveTether(reg, "")
	if err != nil {
		return nil, err
	}
	td.add(srv.close)
	addrs := []string{srv.addr}
	for range 2 {
		up, err := connectClient(ctx, addrs[len(addrs)-1], td)
		if err != nil {
			return nil, err
		}
		relay, err := serveTether(up.Registry(), "")
		if err != nil {
			return nil, err
		}
		td.add(relay.close)
		addrs = append(addrs, relay.addr)
	}
	return addrs, nil
}
