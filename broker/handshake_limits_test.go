package broker

// The limits on handshakes in progress (WithHandshakeLimits), checked with
// raw TCP connections on loopback: 127.0.0.2 and 127.0.0.3 stand for other
// hosts.

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// rawDial opens a TCP connection to addr from the loopback address from
// (127.0.0.1 if empty).
func rawDial(addr, from string) (net.Conn, error) {
	d := net.Dialer{Timeout: hpSlack}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	nc, err := d.Dial("tcp", addr)
	return nc, hpTimeout(err)
}

// rawHungUp waits until the server closes nc, reading and discarding what
// it sends.
func rawHungUp(nc net.Conn, within time.Duration) error {
	nc.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, nc)
	if isTimeout(err) {
		return fmt.Errorf("%w: not disconnected within %v", errHpTimeout, within)
	}
	return nil // EOF or a reset: the server hung up
}

// TestHandshakeLimits checks the caps on handshakes in progress: past the
// per-host limit a connection from that host is closed at once (counted as
// refused) while another host still connects; past the total limit every
// new connection is; once the flood ends, a well-behaved client connects.
func TestHandshakeLimits(t *testing.T) {
	leakcheck.Check(t)
	if ln, err := net.Listen("tcp", "127.0.0.3:0"); err != nil {
		t.Skip("this system has no loopback addresses beyond 127.0.0.1:", err)
	} else {
		ln.Close()
	}
	const total, perHost = 6, 3
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(time.Minute), WithHandshakeLimits(total, perHost))
	var held []net.Conn
	t.Cleanup(func() {
		for _, nc := range held {
			nc.Close()
		}
	})
	hold := func(from string) {
		t.Helper()
		nc, err := rawDial(addr, from)
		require.NoError(t, err)
		held = append(held, nc)
		n := len(held)
		require.Eventually(t, func() bool { return srv.Stats().Handshakes == n }, hpSlack, time.Millisecond,
			"the server has %d handshakes in progress", n)
	}
	refusedAtOnce := func(from string) {
		t.Helper()
		nc, err := rawDial(addr, from)
		require.NoError(t, err)
		defer nc.Close()
		start := time.Now()
		require.NoError(t, rawHungUp(nc, hpSlack), "a connection over the limit is closed at once")
		t.Logf("a connection from %s over the limit was closed after %v (handshake timeout 1m)", from, time.Since(start))
	}
	// dialFrom runs the dialer's side over a connection from the address.
	dialFrom := func(from string) (*Conn, error) {
		nc, err := rawDial(addr, from)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), hpSlack)
		defer cancel()
		return NewConn(ctx, nc)
	}
	add := func(c *Conn) {
		t.Helper()
		n, err := Call[int](testkit.Ctx(t, 30*time.Second), c.Root(), "Add", 1, 2)
		require.NoError(t, err)
		assert.Equal(t, 3, n)
		c.Close()
		<-c.Done()
	}

	// One host at its limit: another connection from it is closed at
	// once; a client from another host connects.
	for i := 0; i < perHost; i++ {
		hold("127.0.0.1")
	}
	refusedAtOnce("127.0.0.1")
	c, err := dialFrom("127.0.0.2")
	require.NoError(t, err, "a client from another host connects during the flood")
	add(c)
	require.Equal(t, int64(1), srv.Stats().Refused)

	// All at the limit: a third host is refused too.
	for i := 0; i < total-perHost; i++ {
		hold("127.0.0.2")
	}
	refusedAtOnce("127.0.0.3")
	_, err = dialFrom("127.0.0.3")
	require.Error(t, err, "no handshake beyond the total limit")
	require.Equal(t, int64(3), srv.Stats().Refused)

	// The flood ends: the handshakes it held are given up, and a
	// well-behaved client connects again.
	for _, nc := range held {
		nc.Close()
	}
	held = nil
	require.Eventually(t, func() bool { return srv.Stats().Handshakes == 0 }, hpSlack, time.Millisecond)
	add(dial(t, addr))
	assert.Equal(t, int64(3+total), srv.Stats().Refused, "every held connection ended as refused")
}

// TestHandshakeLimitsAreServerOptions checks that WithHandshakeLimits is a
// server's option and refuses nonsense.
func TestHandshakeLimitsAreServerOptions(t *testing.T) {
	err := VerifyDialOptions(WithHandshakeLimits(1, 1))
	assert.ErrorContains(t, err, "WithHandshakeLimits applies to a server")
	_, err = buildOptions(serverSide, []Option{WithHandshakeLimits(-1, 1)})
	assert.Error(t, err)
	o, err := buildOptions(serverSide, nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxHandshakes, o.maxHandshakes)
	assert.Equal(t, DefaultMaxHandshakesPerHost, o.maxHostHandshakes)
}
