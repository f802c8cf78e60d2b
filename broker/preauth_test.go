package broker

// What a peer can cost before it has authenticated, and what a flood of
// pings can cost after: raw peers that write yamux frames by hand (no yamux
// client, so that the test process's heap is the server's), over real TCP on
// loopback. See docs/security.md, "Before authentication".

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
)

// yamux's frame types and flags, for peers that write frames by hand.
const (
	yxData         = 0
	yxWindowUpdate = 1
	yxPing         = 2
	yxSYN          = 1
	yxACK          = 2
)

// yxFrame is a yamux frame: its 12-byte header and body.
func yxFrame(typ byte, flags uint16, id, length uint32, body []byte) []byte {
	h := make([]byte, 12, 12+len(body))
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return append(h, body...)
}

// yxPings is n ping requests in a row.
func yxPings(n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, yxFrame(yxPing, yxSYN, 0, uint32(i), nil)...)
	}
	return b
}

// rawFlood writes b to nc n times, stopping early (without error) when the
// server hangs up. It never reads. Each write must be done within the bound.
func rawFlood(nc net.Conn, b []byte, n int, within time.Duration) error {
	for i := 0; i < n; i++ {
		nc.SetWriteDeadline(time.Now().Add(within))
		if _, err := nc.Write(b); err != nil {
			if isTimeout(err) {
				return fmt.Errorf("%w: the server stopped reading: %w", errHpTimeout, err)
			}
			return nil // the server hung up
		}
	}
	return nil
}

// rawJoin completes the handshake as a peer called name by writing yamux
// frames by hand on a TCP connection, and returns the connection.
func rawJoin(addr, name string) (net.Conn, error) {
	nc, err := rawDial(addr, "")
	if err != nil {
		return nil, err
	}
	hello := hpFrame(hpHello(name))
	req := append(yxFrame(yxWindowUpdate, yxSYN, 1, 0, nil),
		yxFrame(yxData, 0, 1, uint32(len(hello)), hello)...)
	nc.SetDeadline(time.Now().Add(hpSlack))
	defer nc.SetDeadline(time.Time{})
	if _, err := nc.Write(req); err != nil {
		nc.Close()
		return nil, err
	}
	// Read frames until stream 1 carries a whole message: the Welcome.
	var main []byte
	hdr := make([]byte, 12)
	for {
		if _, err := io.ReadFull(nc, hdr); err != nil {
			nc.Close()
			return nil, hpTimeout(err)
		}
		n := binary.BigEndian.Uint32(hdr[8:12])
		if hdr[1] != yxData || n == 0 {
			continue
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(nc, body); err != nil {
			nc.Close()
			return nil, hpTimeout(err)
		}
		if binary.BigEndian.Uint32(hdr[4:8]) != 1 {
			continue
		}
		main = append(main, body...)
		size, k := binary.Uvarint(main)
		if k <= 0 || uint64(len(main)-k) < size {
			continue
		}
		m, err := hpParse(main[k : k+int(size)])
		if err != nil || m.typ != uint64(msgWelcome) {
			nc.Close()
			return nil, fmt.Errorf("want a Welcome, got %v (%v)", m, err)
		}
		return nc, nil
	}
}

// goroutinePeak samples the process's goroutine count until stop is
// called, which returns the most it saw above the count at the start.
func goroutinePeak() (stop func() int) {
	base := runtime.NumGoroutine()
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			hpMax(&peak, int64(runtime.NumGoroutine()-base))
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() int {
		close(done)
		<-sampled
		return int(peak.Load())
	}
}

// liveHeap returns the live heap after a collection.
func liveHeap() int64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// heapPeak samples the live heap (after a collection) every 20 ms until
// stop is called, which returns the most it saw above base.
func heapPeak(base int64) (stop func() int64) {
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			hpMax(&peak, liveHeap()-base)
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() int64 {
		close(done)
		<-sampled
		return peak.Load()
	}
}

// preauthGoroutines bounds the goroutines the ping-flood tests allow the
// process to grow by: two attackers at a time, a handful of goroutines each
// on the server while their connections last, the well-behaved client's
// calls, and the samplers. Before the read guard, one such flood grew a
// server by hundreds of thousands.
const preauthGoroutines = 200

// TestHostilePingFloodBeforeHandshake plays raw TCP peers that flood yamux
// pings before any handshake, without reading the answers. yamux starts a
// goroutine per ping; the server must close such a peer after a handful of
// pings, long before its handshake timeout, with its goroutine count
// bounded, while it goes on serving a well-behaved client.
func TestHostilePingFloodBeforeHandshake(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(time.Minute))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	pings := yxPings(1024)

	peak := goroutinePeak()
	heap := heapPeak(liveHeap())
	res := hpUnderAttack(good, 2, func(w, r int) error {
		nc, err := rawDial(addr, "")
		if err != nil {
			return err
		}
		defer nc.Close()
		// Up to 64 Ki pings, then the server must have hung up.
		if err := rawFlood(nc, pings, 64, hpSlack); err != nil {
			return err
		}
		return rawHungUp(nc, hpSlack)
	})
	grew, heapGrew := peak(), heap()
	t.Logf("goroutines during the attack: at most %d more than before; live heap: at most %.1f MiB more (%d hostile connections)",
		grew, float64(heapGrew)/(1<<20), res.rounds)
	res.check(t, "pings flooded before the handshake", before)
	assert.Less(t, grew, preauthGoroutines, "the ping flood is bounded")
	assert.Less(t, heapGrew, int64(preauthHeap), "the server's heap under the attack")
	require.Eventually(t, func() bool { return srv.Stats().Refused >= res.rounds }, hpSlack, time.Millisecond)
	assert.Len(t, srv.Conns(), 1)
	assert.NoError(t, good.Err())
}

// TestHostilePingFloodAfterHandshake completes the handshake by hand and
// then floods pings without reading the answers: after login too, yamux's
// goroutine per ping must not let a peer grow the server without bound. The
// server closes the connection with a protocol violation.
func TestHostilePingFloodAfterHandshake(t *testing.T) {
	leakcheck.Check(t)
	var logs lockedBuffer
	srv, addr := startServer(t, newService(), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)
	pings := yxPings(1024)

	peak := goroutinePeak()
	res := hpUnderAttack(good, 2, func(w, r int) error {
		name := fmt.Sprintf("pinger-%d-%d", w, r)
		nc, err := rawJoin(addr, name)
		if err != nil {
			return err
		}
		defer nc.Close()
		victim, err := hpServerConn(srv, name)
		if err != nil {
			return err
		}
		if err := rawFlood(nc, pings, 64, hpSlack); err != nil {
			return err
		}
		if err := hpDisconnectedWith(victim, ErrProtocol, hpSlack); err != nil {
			return err
		}
		return rawHungUp(nc, hpSlack)
	})
	grew := peak()
	t.Logf("goroutines during the attack: at most %d more than before (%d hostile connections)", grew, res.rounds)
	res.check(t, "pings flooded after the handshake", before)
	assert.Less(t, grew, preauthGoroutines, "the ping flood is bounded")
	assert.True(t, strings.Contains(logs.String(), `level=WARN msg="tether: closing connection"`) &&
		strings.Contains(logs.String(), "pings more often than one per 100ms"), "the violation is logged")
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
	assert.NoError(t, good.Err())
}

// stallingHello opens the main stream with all but the last byte of a
// Hello of the largest size a server reads: the handshake waits for the
// rest.
func stallingHello() []byte {
	var b []byte
	b = binary.AppendUvarint(b, handshakeMax)
	b = append(b, make([]byte, handshakeMax-1)...)
	return yxFrame(yxData, yxSYN, 1, uint32(len(b)), b)
}

// preauthStreams and preauthConns are the stream-filling attack's shape:
// each connection opens the main stream and then as many streams as the
// server would buffer for it before they are accepted (yamux's accept
// backlog was 18), and fills each with a flow-control window, before any
// handshake.
const (
	preauthConns   = 100
	preauthStreams = maxPeerMsgStreams + 1
	// preauthHeap bounds the server's live heap while the attack runs.
	// Without the read guard, the attack held 858 MiB for the handshake
	// timeout.
	preauthHeap = 32 << 20
)

// TestHostileStreamsFilledBeforeHandshake opens 100 connections that each
// open a main stream with a Hello that never ends and 17 more streams
// filled with 256 KiB (yamux's window) before any handshake, as fast as
// the server reads. The server must close each of them as soon as it has
// sent more than a Hello could need, not hold what they sent until the
// handshake timeout, and its live heap must stay within preauthHeap.
//
// It then measures the most a connection can cost and still be held until
// the handshake timeout: one stream carrying all but the last byte of the
// largest Hello. That figure, times the handshake limit, is the server's
// memory bound before authentication (docs/security.md).
func TestHostileStreamsFilledBeforeHandshake(t *testing.T) {
	leakcheck.Check(t)
	// The handshake limits are raised out of the way: this test is about
	// what one connection may cost, TestHandshakeLimits about how many.
	const handshakeTimeout = time.Minute
	var logs lockedBuffer
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(handshakeTimeout),
		WithHandshakeLimits(4*preauthConns, 4*preauthConns),
		WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	// The main stream carries all but the last byte of the largest Hello,
	// which holds the handshake open; the other streams wait to be
	// accepted, which only the handshake would do.
	stall := stallingHello()
	window := make([]byte, 256<<10)
	flood := stall
	for i := uint32(1); i <= preauthStreams; i++ {
		flood = append(flood, yxFrame(yxData, yxSYN, 2*i+1, uint32(len(window)), window)...)
	}

	conns := make([]net.Conn, preauthConns)
	for i := range conns {
		nc, err := rawDial(addr, "")
		require.NoError(t, err)
		t.Cleanup(func() { nc.Close() })
		conns[i] = nc
	}
	base := liveHeap()
	peak := heapPeak(base)
	start := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		errs    []error
		slowest atomic.Int64
	)
	for i, nc := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Without a guard, the server reads it all, slowly: the
			// bound is the handshake timeout, not hpSlack.
			err := rawFlood(nc, flood, 1, handshakeTimeout)
			if err == nil {
				err = rawHungUp(nc, hpSlack)
			}
			hpMax(&slowest, int64(time.Since(start)))
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("connection %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	// The well-behaved client is measured while the attack runs.
	during, calls, err := hpMeasure(good)
	wg.Wait()
	grew := peak()
	t.Logf("%d connections pushing %d streams of 256 KiB each and a stalled Hello (%d MiB in all) before their handshake: "+
		"live heap grew by at most %.1f MiB; the last was closed after %v (handshake timeout 1m)",
		preauthConns, preauthStreams, preauthConns*len(flood)>>20, float64(grew)/(1<<20), time.Duration(slowest.Load()))
	require.NoError(t, err)
	require.NoError(t, errors.Join(errs...))
	hpReport(t, "100 connections filling 17 streams before the handshake", before, during, calls, preauthConns)
	assert.Less(t, grew, int64(preauthHeap), "the server's heap under the attack")
	require.Eventually(t, func() bool { return srv.Stats().Refused >= preauthConns }, hpSlack, time.Millisecond)
	assert.True(t, strings.Contains(logs.String(),
		`level=DEBUG msg="tether: handshake failed" remote=127.0.0.1`) &&
		strings.Contains(logs.String(), `err="tether: handshake: protocol violation: more than 20480 bytes before the handshake"`),
		"the refusals are logged, at debug level, with their cause")
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "protocol violation") {
			t.Errorf("a peer not let in is logged at debug level only, not: %s", line)
			break
		}
	}

	// The costliest connection that is still held: the main stream with a
	// Hello frame declaring handshakeMax bytes and carrying all but one.
	var ms runtime.MemStats
	base = liveHeap()
	runtime.ReadMemStats(&ms)
	stacks := ms.StackInuse
	goroutines := runtime.NumGoroutine()
	held := make([]net.Conn, preauthConns)
	for i := range held {
		nc, err := rawDial(addr, "")
		require.NoError(t, err)
		t.Cleanup(func() { nc.Close() })
		require.NoError(t, rawFlood(nc, stall, 1, hpSlack))
		held[i] = nc
	}
	// Wait until the server has read every byte: its counters of bytes
	// read are not public, so poll the heap until it stops growing.
	var cost int64
	for settled := 0; settled < 5; time.Sleep(20 * time.Millisecond) {
		c := liveHeap() - base
		if c <= cost+1024 {
			settled++
		} else {
			settled = 0
		}
		cost = max(cost, c)
	}
	perConn := cost / preauthConns
	perConnG := (runtime.NumGoroutine() - goroutines) / preauthConns
	runtime.ReadMemStats(&ms)
	perConnStack := (int64(ms.StackInuse) - int64(stacks)) / preauthConns
	t.Logf("a connection held before its handshake at the most it may send (%d bytes): %.1f KiB of live heap, "+
		"%d goroutines with %.1f KiB of stack; at the default limit of %d handshakes in progress: %.1f MiB of heap and %.1f MiB of stacks",
		len(stall), float64(perConn)/1024, perConnG, float64(perConnStack)/1024, DefaultMaxHandshakes,
		float64(perConn*DefaultMaxHandshakes)/(1<<20), float64(perConnStack*DefaultMaxHandshakes)/(1<<20))
	assert.Less(t, perConn, int64(preauthHeap/preauthConns), "the costliest held connection")
	assert.Equal(t, preauthConns, srv.Stats().Handshakes, "the stalled connections are held")
	assert.Equal(t, int64(1), srv.Stats().Accepted, "no hostile connection got in")
}

// lockedBuffer is a buffer a logger or a running command writes while the
// test reads it.
type lockedBuffer = logbuf.Buffer
