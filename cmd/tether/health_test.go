package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/registry"
)

// TestHealthExitCodes: 0 and the status for a serving server, in text and
// JSON; 3 for an address nobody listens on; 4 for a wrong token; 2 for
// no address.
func TestHealthExitCodes(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	out, stderr, code := tether("health", addr)
	assert.Equal(t, exitOK, code, stderr)
	assert.Regexp(t, `^serving\tname="tether-demo" uptime=\S+ conns=1\n$`, out)

	out, stderr, code = tether("health", "-json", addr)
	require.Equal(t, exitOK, code, stderr)
	var h map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &h))
	assert.Equal(t, "serving", h["status"])
	assert.Equal(t, "tether-demo", h["name"])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()
	_, stderr, code = tether("health", "-timeout", "5s", closed)
	assert.Equal(t, exitUnreachable, code, stderr)

	locked, _ := serve(t, "-token", "right")
	_, stderr, code = tether("health", "-token", "wrong", locked)
	assert.Equal(t, exitRefused, code, stderr)
	assert.Contains(t, stderr, "authentication failed")

	_, _, code = tether("health")
	assert.Equal(t, exitUsage, code)
}

// blocker is a manager whose Block runs until released.
type blocker struct {
	started chan struct{}
	release chan struct{}
}

func (b *blocker) Block(ctx context.Context) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestHealthOfADrainingServer: a probe connected before the drain began
// prints "draining" and exits 5.
func TestHealthOfADrainingServer(t *testing.T) {
	leakcheck.Check(t)
	b := &blocker{started: make(chan struct{}, 1), release: make(chan struct{})}
	reg := registry.New()
	require.NoError(t, reg.Register("b", b))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg, broker.WithName("draining-one"))
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var df dialFlags
	df.timeout = 10 * time.Second
	conn, err := df.dialOnce(ctx, ln.Addr().String())
	require.NoError(t, err)
	defer func() { conn.Close(); <-conn.Done() }()
	var blk *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &blk, "b"))
	blocked := make(chan error, 1)
	go func() { blocked <- blk.Call(ctx, "Block", nil) }()
	<-b.started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	<-conn.GoingAway()

	var out bytes.Buffer
	err = printHealth(ctx, conn, df.timeout, &out, false)
	var ex *exitError
	require.True(t, errors.As(err, &ex), "%v", err)
	assert.Equal(t, exitDraining, ex.code)
	assert.Regexp(t, `^draining\tname="draining-one" `, out.String())

	close(b.release)
	require.NoError(t, <-blocked)
	require.NoError(t, <-shut)
}

// TestServeDrainsOnSignal: tether serve, interrupted (its context is what
// SIGTERM and SIGINT cancel), tells its clients it is going away and
// exits 0.
func TestServeDrainsOnSignal(t *testing.T) {
	leakcheck.Check(t)
	out, stop := background(t, "serve", "-listen", "127.0.0.1:0", "-grace", "5s")
	addr := waitFor(t, out, `serving on tcp://(\S+) `)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, "tcp", addr)
	require.NoError(t, err)
	defer func() { conn.Close(); <-conn.Done() }()
	var users *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &users, "users"))

	assert.Equal(t, exitOK, stop())
	// The client answered the notice before the server could close, but
	// the goroutine that closes GoingAway after that answer may not have
	// run yet: wait for it, bounded.
	select {
	case <-conn.GoingAway():
	case <-ctx.Done():
		t.Fatal("the server closed without telling its client it was going away")
	}
	<-conn.Closed()
	assert.ErrorIs(t, conn.Err(), broker.ErrGoingAway)
	assert.Contains(t, out.String(), "tether demo draining (up to 5s)")
}
