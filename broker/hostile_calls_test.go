package broker

// Hostile peers after their handshake, abusing calls and references:
// releases of ids never handed out, and floods of calls. The harness, and
// what every hostile-peer test checks, are in hostile_peers_test.go.

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestHostileReleaseOfUnknownIDs releases references the peer never had:
// an id never handed out, the root (which is never counted), a count of
// zero, more than were handed out, one already released. Each is a
// protocol violation: the server says goodbye naming the problem and
// hangs up.
func TestHostileReleaseOfUnknownIDs(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	// counter obtains an object of the server's: id, with one reference.
	counter := func(p *hpPeer) (uint64, error) {
		if err := p.send(hpCall(1, 0, "NewCounter")); err != nil {
			return 0, err
		}
		m, err := p.next(hpSlack)
		if err != nil {
			return 0, err
		}
		if m.typ != uint64(msgReturn) || m.ref == 0 {
			return 0, fmt.Errorf("want a reference from NewCounter, got %v", m)
		}
		return m.ref, nil
	}
	abuses := []struct {
		name string
		run  func(p *hpPeer) error
	}{
		{"an id never handed out", func(p *hpPeer) error { return p.send(hpRelease(12345, 1)) }},
		{"the root", func(p *hpPeer) error { return p.send(hpRelease(0, 1)) }},
		{"a count of zero", func(p *hpPeer) error {
			id, err := counter(p)
			if err != nil {
				return err
			}
			return p.send(hpRelease(id, 0))
		}},
		{"more than was handed out", func(p *hpPeer) error {
			id, err := counter(p)
			if err != nil {
				return err
			}
			return p.send(hpRelease(id, 2))
		}},
		{"a count of 2^64-1", func(p *hpPeer) error {
			id, err := counter(p)
			if err != nil {
				return err
			}
			return p.send(hpRelease(id, ^uint64(0)))
		}},
		{"a reference already released", func(p *hpPeer) error {
			id, err := counter(p)
			if err != nil {
				return err
			}
			_ = p.send(hpRelease(id, 1)) // fine: the object is dropped
			return p.send(hpRelease(id, 1))
		}},
	}

	res := hpUnderAttack(good, 4, func(w, r int) error {
		a := abuses[(w+r)%len(abuses)]
		p, err := hpJoin(addr, fmt.Sprintf("release-%d-%d", w, r))
		if err != nil {
			return err
		}
		defer p.close()
		p.collect(false)
		_ = a.run(p) // a write error only means the server hung up already
		if err := p.expectGoodbye("never handed out"); err != nil {
			return fmt.Errorf("release of %s: %w", a.name, err)
		}
		return nil
	})
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
	assert.NoError(t, good.Err())
	// Every peer was disconnected in time; some may have had no Goodbye.
	res.check(t, "releases of ids never held", before, hpBug{errHpNoGoodbye, hpBugGoodbyeSkipped})
}

// TestHostileCallFloodOverQuota has peers send 100 calls at once to a
// method that blocks, against a quota of 8 concurrent calls per peer: the
// first 8 run, the other 92 fail at once with tether.too-many-calls, and
// the connection stays up. While those 8 are blocked the peers keep
// flooding (every call fails at once), and the well-behaved client, whose
// quota is its own, is measured. Once the blocked calls finish the
// flooders are served again.
func TestHostileCallFloodOverQuota(t *testing.T) {
	leakcheck.Check(t)
	const quota, flood = 8, 100
	svc := newService()
	srv, addr := startServer(t, svc, WithMaxConcurrentCalls(quota))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	const workers = 2
	peers := make([]*hpPeer, workers)
	next := make([]uint64, workers) // each peer's last call id
	for w := range peers {
		p := hpJoinT(t, addr, fmt.Sprintf("flood-%d", w))
		p.collect(false)
		peers[w] = p
		var batch []byte
		for next[w] < flood {
			next[w]++
			batch = append(batch, hpFrame(hpCall(next[w], 0, "Block"))...)
		}
		require.NoError(t, p.write(batch))
		for i := 0; i < quota; i++ {
			select {
			case <-svc.started:
			case <-time.After(hpSlack):
				t.Fatalf("peer %d: only %d of the calls within the quota started", w, i)
			}
		}
		refused := map[uint64]bool{}
		for len(refused) < flood-quota {
			m, err := p.next(hpSlack)
			require.NoError(t, err)
			require.Equal(t, uint64(msgFail), m.typ, "only the calls over the quota are answered yet: %v", m)
			require.ErrorIs(t, m.err, ErrTooManyCalls)
			require.Greater(t, m.id, uint64(quota), "the calls within the quota run")
			refused[m.id] = true
		}
	}
	select {
	case <-svc.started:
		t.Fatal("a call over the quota ran")
	default:
	}

	res := hpUnderAttack(good, workers, func(w, _ int) error {
		p := peers[w]
		var batch []byte
		want := map[uint64]bool{}
		for i := 0; i < 50; i++ {
			next[w]++
			batch = append(batch, hpFrame(hpCall(next[w], 0, "Add", 1, 2))...)
			want[next[w]] = true
		}
		if err := p.write(batch); err != nil {
			return err
		}
		for len(want) > 0 {
			m, err := p.next(hpSlack)
			if err != nil {
				return err
			}
			if m.typ != uint64(msgFail) || !errors.Is(m.err, ErrTooManyCalls) || !want[m.id] {
				return fmt.Errorf("want too-many-calls for a flooded call, got %v", m)
			}
			delete(want, m.id)
		}
		return nil
	})
	res.check(t, "calls over the quota", before)

	// The flooders are still connected: their blocked calls complete, and
	// then they are served again.
	close(svc.release)
	for w, p := range peers {
		for i := 0; i < quota; i++ {
			m, err := p.next(hpSlack)
			require.NoError(t, err)
			require.Equal(t, uint64(msgReturn), m.typ, "%v", m)
			require.LessOrEqual(t, m.id, uint64(quota))
		}
		next[w]++
		require.NoError(t, p.send(hpCall(next[w], 0, "Add", 1, 2)))
		m, err := p.next(hpSlack)
		require.NoError(t, err)
		assert.Equal(t, uint64(msgReturn), m.typ, "%v", m)
		assert.Equal(t, next[w], m.id)
		assert.False(t, p.sess.IsClosed())
	}
	assert.Len(t, srv.Conns(), 1+workers)
	assert.NoError(t, good.Err())
}

// TestHostileCallFloodWithoutReading floods calls that fail at once (an
// unknown method: no handler runs, the reader answers) and never reads the
// answers. The server's reader must not wait on the network, so it queues
// the Fail messages (sender.post); the test checks that the peer is
// disconnected with ErrWriteTimeout, and that the queue of answers it
// could not deliver stayed bounded (hpMaxQueued) meanwhile: the peer
// sends as fast as the server reads, so without a bound the queue grows
// with the write timeout, to hundreds of MiB at the default 15 s. The
// write timeout here is long so that a slow machine still fills the queue
// past the bound: the test stops as soon as it does.
func TestHostileCallFloodWithoutReading(t *testing.T) {
	leakcheck.Check(t)
	const (
		writeTimeout = 20 * time.Second
		// hpMaxQueued is what the server may hold for a peer that does not
		// read: several times the 1 MiB at which calls that can wait are
		// held back (maxPending).
		hpMaxQueued = 8 * maxPending
	)
	srv, addr := startServer(t, newService(), WithWriteTimeout(writeTimeout))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	p := hpJoinT(t, addr, "flood-deaf")
	victim, err := hpServerConn(srv, "flood-deaf")
	require.NoError(t, err)

	// Watch the victim's queue of unwritten output; over the bound is
	// reported at once.
	var peak atomic.Int64
	over := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			victim.out.mu.Lock()
			n := len(victim.out.pend)
			victim.out.mu.Unlock()
			hpMax(&peak, int64(n))
			if n > hpMaxQueued {
				close(over)
				return
			}
			select {
			case <-victim.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	// The flood, until the server hangs up or the test ends.
	var sent atomic.Int64
	floodDone := make(chan struct{})
	go func() {
		defer close(floodDone)
		// Failed calls are not remembered, so one batch can be sent over
		// and over: the peer floods as fast as the server reads.
		var batch []byte
		for id := uint64(1); id <= 1000; id++ {
			batch = append(batch, hpFrame(hpCall(id, 0, "NoSuchMethod"))...)
		}
		for p.write(batch) == nil {
			sent.Add(1000)
		}
	}()

	during, calls, err := hpMeasure(good)
	require.NoError(t, err)
	hpReport(t, "a flood of failing calls, never read", before, during, calls, 1)
	select {
	case <-victim.Closed():
	case <-over:
	case <-time.After(writeTimeout + hpSlack):
	}
	overflowed := peak.Load() > hpMaxQueued
	if !overflowed {
		require.NoError(t, hpDisconnectedWith(victim, ErrWriteTimeout, hpSlack))
	}
	p.close()
	<-floodDone
	<-watchDone
	require.NoError(t, hpDisconnectedWith(victim, nil, hpSlack), "the hostile connection ends")
	t.Logf("the peer sent %d calls; the server queued up to %d KiB of answers for it (write timeout %v)",
		sent.Load(), peak.Load()>>10, writeTimeout)
	_, err = Call[int](testkit.Ctx(t, 30*time.Second), good.Root(), "Add", 1, 2)
	require.NoError(t, err)
	if overflowed {
		t.Fatalf("a fixed bug is back: the server queued over %d MiB of Fail messages for a peer that does not read "+
			"(sender.post must fail the connection beyond maxPosted)", hpMaxQueued>>20)
	}
}
