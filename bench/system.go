package main

import (
	"context"
	"fmt"
	"net"
	"sync"
)

// A System is one RPC stack under test: a server and the client side that
// calls it, all in this process over loopback TCP.
//
// Start brings up the server and the shared client connection. Prepare is
// called before each cell with the number of concurrent callers; it sets up
// whatever per-caller state the system needs (a connection per caller for
// drpc, a callback object per caller, an output buffer). The three call
// methods are then invoked concurrently, caller w only ever using index w.
// Each returns the bytes that came back, which the runner compares with what
// was sent; the slice may be reused by the caller's next call. Close stops
// every goroutine the system started.
type System interface {
	Name() string
	// Label is the row label in the table for a workload kind ("echo",
	// "fetchcall", "callback") at the given number of callers.
	Label(kind string, callers int) string
	Start() error
	Prepare(callers int) error
	Echo(ctx context.Context, w int, in []byte) ([]byte, error)
	FetchCall(ctx context.Context, w int, in []byte) ([]byte, error)
	Callback(ctx context.Context, w int, in []byte) ([]byte, error)
	Close() error
}

// allSystems returns fresh, unstarted instances of every system, Tether
// first.
func allSystems() []System {
	return []System{
		&tetherSys{},
		&netrpcSys{},
		&grpcSys{},
		&drpcSys{},
		&capnpSys{},
		&natsSys{},
	}
}

// listen opens a loopback TCP listener on a free port.
func listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

// grow extends s to at least n elements, keeping what is there.
func grow[T any](s []T, n int) []T {
	for len(s) < n {
		var zero T
		s = append(s, zero)
	}
	return s
}

// connSet serves the connections a listener accepts, each in a goroutine
// it tracks, and can close them all: for servers whose library offers no
// way to stop their connections (net/rpc) or that serve one connection at a
// time (capnp's rpc.Conn).
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// serve accepts connections on ln until it is closed, running serve for
// each in a tracked goroutine.
func (cs *connSet) serve(ln net.Listener, serve func(net.Conn)) {
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cs.mu.Lock()
			if cs.conns == nil {
				cs.conns = make(map[net.Conn]struct{})
			}
			cs.conns[c] = struct{}{}
			cs.mu.Unlock()
			cs.wg.Add(1)
			go func() {
				defer cs.wg.Done()
				serve(c)
				cs.mu.Lock()
				delete(cs.conns, c)
				cs.mu.Unlock()
			}()
		}
	}()
}

// close closes every connection still open and waits for the accept loop
// (its listener must be closed first) and the serving goroutines to end.
func (cs *connSet) close() {
	cs.mu.Lock()
	for c := range cs.conns {
		c.Close()
	}
	cs.mu.Unlock()
	cs.wg.Wait()
}
