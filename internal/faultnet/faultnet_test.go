package faultnet

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// echoServer echoes lines back until the test ends.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	conns := make(chan net.Conn, 100)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go io.Copy(c, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

func roundTrip(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestProxyFaults(t *testing.T) {
	leakcheck.Check(t)
	p, err := New(echoServer(t))
	require.NoError(t, err)
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	got, err := roundTrip(c, "hello")
	require.NoError(t, err)
	assert.Equal(t, "hello\n", got)

	// Black hole: the socket stays open, nothing comes back.
	p.Blackhole(true)
	_, err = roundTrip(c, "lost")
	require.Error(t, err)
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "silence, not a reset")
	p.Restore()

	// Reset: every connection is aborted.
	p.Reset()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)

	// Refuse: new connections are dropped at once.
	// Either the dial itself sees the reset (the proxy reset the connection
	// before the dialer checked its socket) or the first read does.
	p.Refuse(true)
	if c2, err := net.Dial("tcp", p.Addr()); err == nil {
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c2.Read(make([]byte, 1))
		require.Error(t, err)
		assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "dropped, not ignored: %v", err)
		c2.Close()
	}
	require.Eventually(t, func() bool { return p.Accepted() == 2 }, 5*time.Second, time.Millisecond)
	p.Restore()

	// Delay: traffic still flows, later.
	p.SetDelay(50 * time.Millisecond)
	c3, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c3.Close()
	start := time.Now()
	c3.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = c3.Write([]byte("slow\n"))
	require.NoError(t, err)
	got, err = bufio.NewReader(c3).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "slow\n", got)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond, "delayed both ways")
	assert.GreaterOrEqual(t, p.Accepted(), 3)
}

// TestBlackholeLiftAbortsHoledLinks: a link that lost bytes to a black hole
// is reset when it lifts (a TCP stream cannot skip bytes), one that lost
// nothing goes on, and in Lossy mode the holed link goes on too.
func TestBlackholeLiftAbortsHoledLinks(t *testing.T) {
	for _, lossy := range []bool{false, true} {
		addr := echoServer(t)
		p, err := New(addr)
		require.NoError(t, err)
		p.Lossy(lossy)
		holed, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		quiet, err := net.Dial("tcp", p.Addr())
		require.NoError(t, err)
		for _, c := range []net.Conn{holed, quiet} {
			got, err := roundTrip(c, "hello")
			require.NoError(t, err)
			assert.Equal(t, "hello\n", got)
		}
		p.Blackhole(true)
		_, err = roundTrip(holed, "lost")
		require.Error(t, err)
		p.Blackhole(false)
		got, err := roundTrip(quiet, "after")
		require.NoError(t, err, "a link that lost nothing goes on")
		assert.Equal(t, "after\n", got)
		_, err = roundTrip(holed, "after")
		if lossy {
			require.NoError(t, err, "lossy: the holed link goes on")
		} else {
			require.Error(t, err, "the holed link was reset")
			assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "reset, not silence: %v", err)
		}
		holed.Close()
		quiet.Close()
		p.Close()
	}
}
