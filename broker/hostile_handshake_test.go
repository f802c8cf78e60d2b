package broker

// Hostile peers before their handshake is done: peers that never finish
// it, and peers that open streams before it. The harness, and what every
// hostile-peer test checks, are in hostile_peers_test.go.

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestHostileHandshakeNeverFinishes plays peers that stop at every point
// of the handshake: a silent TCP connection, a yamux session without a
// stream, a main stream without a Hello, half a Hello, and a Hello sent a
// byte at a time (slower than the timeout, though never idle for long).
// The handshake timeout is a deadline for the whole handshake, so each must
// be disconnected once it passes, and none may become a connection.
func TestHostileHandshakeNeverFinishes(t *testing.T) {
	leakcheck.Check(t)
	const timeout = 300 * time.Millisecond
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(timeout))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	bound := timeout + hpSlack

	// connectedStall connects, opens the main stream when asked, and lets
	// stall do the rest before waiting for the server to hang up.
	connectedStall := func(main bool, stall func(p *hpPeer)) func() error {
		return func() error {
			p, err := hpConnect(addr)
			if err != nil {
				return err
			}
			defer p.close()
			if main {
				if err := p.openMain(); err != nil {
					return err
				}
			}
			stall(p)
			return p.hungUp(bound)
		}
	}
	stalls := []struct {
		name string
		run  func() error
	}{
		{"silent TCP connection", func() error {
			nc, err := net.DialTimeout("tcp", addr, hpSlack)
			if err != nil {
				return err
			}
			defer nc.Close()
			// The server hangs up: reads end with EOF, not the deadline.
			nc.SetReadDeadline(time.Now().Add(bound))
			buf := make([]byte, 512)
			for {
				if _, err := nc.Read(buf); err != nil {
					if isTimeout(err) {
						return fmt.Errorf("%w: not disconnected within %v", errHpTimeout, bound)
					}
					return nil
				}
			}
		}},
		{"yamux session without a stream", connectedStall(false, func(*hpPeer) {})},
		{"main stream without a Hello", connectedStall(true, func(*hpPeer) {})},
		{"half a Hello", connectedStall(true, func(p *hpPeer) {
			f := hpFrame(hpHello("half"))
			_ = p.write(f[:len(f)/2])
		})},
		{"a Hello a byte at a time", connectedStall(true, func(p *hpPeer) {
			// A byte every half timeout: the whole Hello would take ten
			// timeouts. If it all goes out, hungUp reports the server's
			// patience.
			f := hpFrame(hpHello("dribbler"))
			for i := range f {
				select {
				case <-p.sess.CloseChan():
					return
				case <-time.After(timeout / 2):
				}
				_ = p.write(f[i : i+1])
			}
		})},
	}

	var slowest atomic.Int64
	res := hpUnderAttack(good, 2*len(stalls), func(w, _ int) error {
		s := stalls[w%len(stalls)]
		start := time.Now()
		if err := s.run(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		hpMax(&slowest, int64(time.Since(start)))
		return nil
	})
	res.check(t, "handshakes that never finish", before)
	t.Logf("the longest a stalled peer was kept: %v (handshake timeout %v)", time.Duration(slowest.Load()), timeout)

	// Every stalled peer was refused; none became a connection.
	require.Eventually(t, func() bool { return srv.Stats().Refused >= res.rounds }, hpSlack, time.Millisecond,
		"every stalled handshake is counted as refused")
	assert.Len(t, srv.Conns(), 1, "only the well-behaved client is connected")
	assert.NoError(t, good.Err())
}

// TestHostileStreamsBeforeHandshake opens many streams before its Hello
// (which never comes) and fills each with a flow-control window of data.
// yamux buffers what arrives on streams nobody has accepted yet, so until
// the handshake timeout the server held up to the accept backlog (18
// streams, since this test found 256 too many) times the window (256 KiB)
// per connection, before the peer had even shown a token. The read guard
// (readGuard in transport.go) now disconnects such a peer at its second
// stream or its 20th KiB, whichever comes first; the test checks that the
// peer is disconnected and reports how far the server's heap grew
// (TestHostileStreamsFilledBeforeHandshake bounds it).
func TestHostileStreamsBeforeHandshake(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(timeout))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	window := make([]byte, 256<<10)
	const streams = 64

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := int64(ms.HeapAlloc)
	var peak atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(10 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			hpMax(&peak, int64(ms.HeapAlloc)-base)
		}
	}()

	res := hpUnderAttack(good, 2, func(w, r int) error {
		p, err := hpConnect(addr)
		if err != nil {
			return err
		}
		defer p.close()
		if err := p.openMain(); err != nil {
			return err
		}
		for i := 0; i < streams; i++ {
			st, err := p.sess.OpenStream()
			if err != nil || hpWriteOn(st, window) != nil {
				break // the server hung up
			}
		}
		return p.hungUp(timeout + hpSlack)
	})
	close(stopSampling)
	<-sampled
	res.check(t, "streams filled before the handshake", before)
	t.Logf("heap growth while 2 peers each pushed up to %d MiB before their handshake: up to %d MiB",
		streams*len(window)>>20, peak.Load()>>20)
	require.Eventually(t, func() bool { return srv.Stats().Refused >= res.rounds }, hpSlack, time.Millisecond)
	assert.Len(t, srv.Conns(), 1)
}
