package broker

// Hostile peers after their handshake, abusing streams: too many message
// streams, streams never read, a peer that stops reading. The harness, and
// what every hostile-peer test checks, are in hostile_peers_test.go.

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestHostileTooManyMessageStreams opens message streams. Sixteen are
// allowed, even when they stay idle or stop in the middle of a frame (the
// server holds a reader and a small buffer for each, no more): the
// connection stays up and its calls are answered. The seventeenth is a
// protocol violation.
//
// Every such peer leaves the server up to 16 readers blocked on idle
// streams when its connection ends, which is where yamux v0.1.2 spins
// (hpBugYamuxSpin): under this attack the well-behaved client's latency
// grows a hundredfold or more, or its calls time out, and the test skips
// naming the bug.
func TestHostileTooManyMessageStreams(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	res := hpUnderAttack(good, 2, func(w, r int) error {
		p, err := hpJoin(addr, fmt.Sprintf("streams-%d-%d", w, r))
		if err != nil {
			return err
		}
		defer p.close()
		p.collect(false)
		if w%2 == 0 {
			for i := 0; i <= maxPeerMsgStreams; i++ {
				if _, err := p.sess.OpenStream(); err != nil {
					break // the server hung up already
				}
			}
			return p.expectGoodbye(fmt.Sprintf("more than %d message streams", maxPeerMsgStreams))
		}
		for i := 0; i < maxPeerMsgStreams; i++ {
			st, err := p.sess.OpenStream()
			if err != nil {
				return err
			}
			if i%2 == 0 {
				// A frame that declares 60 KiB and stops after 3 bytes.
				if err := hpWriteOn(st, []byte{0x80, 0xe0, 0x03, 0x86, 0x03, 0x01}); err != nil {
					return err
				}
			}
		}
		if err := p.send(hpCall(1, 0, "Add", 2, 3)); err != nil {
			return err
		}
		m, err := p.next(hpSlack)
		if err != nil {
			return err
		}
		if m.typ != uint64(msgReturn) || m.id != 1 {
			return fmt.Errorf("with 16 message streams open, want the Return of call 1, got %v", m)
		}
		return nil
	})
	// The server lets go of the hostile peers' connections. With the bug
	// below, this too can take longer than the bound.
	deadline := time.Now().Add(3 * hpSlack)
	for len(srv.Conns()) > 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := len(srv.Conns()); n > 1 {
		res.errs = append(res.errs, fmt.Errorf("%w: %d hostile connections still open %v after the attack", errHpTimeout, n-1, 3*hpSlack))
	}
	// The bug shows as timeouts, and otherwise as a latency ratio in the
	// hundreds.
	res.check(t, "too many message streams", before, hpBug{errHpTimeout, hpBugYamuxSpin})
	assert.NoError(t, good.Err())
}

// TestHostileUnreadMessageStreams plays a peer that reads the main stream
// but never accepts the message streams the server opens for large
// results. Once their flow-control windows are full, the server's writes
// cannot complete: the connection must end with ErrWriteTimeout (as for a
// peer that stops reading altogether), and only that connection.
func TestHostileUnreadMessageStreams(t *testing.T) {
	leakcheck.Check(t)
	const writeTimeout = 300 * time.Millisecond
	srv, addr := startServer(t, newService(), WithWriteTimeout(writeTimeout))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	// Over the 32 KiB from which results go on message streams; 40 of them
	// are more than the windows of the 4 streams the server opens.
	payload := make([]byte, 40<<10)

	res := hpUnderAttack(good, 2, func(w, r int) error {
		name := fmt.Sprintf("unread-%d-%d", w, r)
		p, err := hpJoin(addr, name)
		if err != nil {
			return err
		}
		defer p.close()
		p.collect(false)
		victim, err := hpServerConn(srv, name)
		if err != nil {
			return err
		}
		for i := uint64(1); i <= 40; i++ {
			if p.send(hpCall(i, 0, "Echo", payload)) != nil {
				break // the server hung up already
			}
		}
		return hpDisconnectedWith(victim, ErrWriteTimeout, writeTimeout+hpSlack)
	})
	res.check(t, "message streams never read", before)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
	assert.NoError(t, good.Err())
}

// TestHostilePeerStopsReading extends TestPeerThatStopsReadingIsDisconnected
// (hostile_test.go): peers that ask for results and never read them are
// disconnected with ErrWriteTimeout, over and over, while the well-behaved
// client's latency is measured.
func TestHostilePeerStopsReading(t *testing.T) {
	leakcheck.Check(t)
	const writeTimeout = 300 * time.Millisecond
	srv, addr := startServer(t, newService(), WithWriteTimeout(writeTimeout))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	payload := make([]byte, 16<<10) // results stay on the main stream

	res := hpUnderAttack(good, 2, func(w, r int) error {
		name := fmt.Sprintf("deaf-%d-%d", w, r)
		p, err := hpJoin(addr, name)
		if err != nil {
			return err
		}
		defer p.close()
		victim, err := hpServerConn(srv, name)
		if err != nil {
			return err
		}
		// 40 results of 16 KiB: more than the main stream's 256 KiB window
		// and then some.
		for i := uint64(1); i <= 40; i++ {
			if p.send(hpCall(i, 0, "Echo", payload)) != nil {
				break
			}
		}
		return hpDisconnectedWith(victim, ErrWriteTimeout, writeTimeout+hpSlack)
	})
	res.check(t, "peers that stop reading", before)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
	assert.NoError(t, good.Err())
}
