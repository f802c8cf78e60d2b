package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// sinkService takes large values and keeps nothing.
type sinkService struct{ remoteable.Referenceable }

// Sink takes b and drops it.
func (sinkService) Sink(b []byte) error { return nil }

// TestKeepaliveFindsBlackHoleMidLargeValue: a link black-holed while large
// values flow to the acceptor (so that yamux's receive loop there waits,
// holding its stream's receive lock, for the rest of a data frame that never
// comes, while the acceptor itself has nothing large to write) still ends on
// the acceptor within the dead-peer timeout, found by its keepalive. The keepalive's
// tidying (shrinkStreams, yamux's Stream.Shrink, which takes that lock)
// must not stand between the timer and the silence check.
func TestKeepaliveFindsBlackHoleMidLargeValue(t *testing.T) {
	leakcheck.Check(t)
	const timeout = time.Second
	srv, addr := startServer(t, sinkService{}, WithDeadPeerTimeout(timeout))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.Addr(), WithDeadPeerTimeout(timeout))
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, cl.Root().Call(ctx, "Sink", nil, []byte("x")))

	// Callers send 1 MiB values until the link dies under them.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := pattern(1<<20+7, w)
			for cl.Root().Call(ctx, "Sink", nil, want) == nil {
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // values in flight both ways
	proxy.Blackhole(true)
	start := time.Now()
	select {
	case <-sc.Closed():
		t.Logf("the acceptor found the black hole after %v", time.Since(start))
		assert.ErrorIs(t, sc.Err(), yamux.ErrKeepAliveTimeout)
	case <-time.After(5 * timeout):
		t.Errorf("the acceptor did not find the black hole within 5 × the dead-peer timeout")
	}
	proxy.Close() // frees the sides that did not notice, if the test failed
	wg.Wait()
}

// TestLargeWriteToSlowPeerEndsWithinDeadline: a caller sending a value
// larger than the stream window to a peer that takes it slowly (a link
// throttled to 32 KiB/s) gets a typed error by its context's deadline,
// not the write timeout's (15 s by default), while another connection to
// the same server keeps being served.
func TestLargeWriteToSlowPeerEndsWithinDeadline(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &largeService{})
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	slow := dial(t, proxy.Addr())
	other := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, slow.Root().Call(ctx, "Echo", nil, []byte("x")))
	proxy.SetBandwidth(32 << 10)

	const deadline = time.Second
	for _, n := range []int{1<<20 + 7, 3 << 20} {
		cctx, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- slow.Root().Call(cctx, "Echo", nil, pattern(n, n)) }()
		// The other connection is served meanwhile.
		for i := range 5 {
			want := pattern(300<<10, i)
			var out []byte
			require.NoError(t, other.Root().Call(ctx, "Echo", &out, want))
			require.True(t, bytes.Equal(want, out))
		}
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * deadline):
			t.Fatalf("a %d-byte call to a slow peer still blocked after %v (deadline %v)", n, time.Since(start), deadline)
		}
		cancel()
		took := time.Since(start)
		t.Logf("%d bytes: %v after %v: %v (slow link still up: %v)", n, CodeOf(err), took, err, slow.Err() == nil)
		require.Error(t, err)
		assert.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrWriteTimeout), "typed: %v", err)
		assert.Less(t, took, deadline+2*time.Second, "the caller's deadline bounds the call")
		require.NoError(t, slow.Err(), "a caller giving up does not end the link")
	}
	// The frames the callers gave up on were finished in the background:
	// once the link is fast again, it carries large values intact.
	proxy.Restore()
	for i := range 4 {
		want := pattern(1<<20+7, 100+i)
		var out []byte
		require.NoError(t, slow.Root().Call(ctx, "Echo", &out, want))
		require.True(t, bytes.Equal(want, out), "a value after the abandoned ones came back different")
	}
	require.NoError(t, slow.Err())
	for _, sc := range srv.Conns() {
		require.NoError(t, sc.Err())
	}
}

// TestAbandonedLargeWriteStillBoundedByWriteTimeout: the rest of a frame
// whose caller gave up is still written under the write timeout; a peer
// that takes nothing more (a black hole) ends the connection loudly (ErrWriteTimeout),
// not a stream left holding half a frame.
func TestAbandonedLargeWriteStillBoundedByWriteTimeout(t *testing.T) {
	leakcheck.Check(t)
	const writeTimeout = 1500 * time.Millisecond
	_, addr := startServer(t, &largeService{})
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	slow := dial(t, proxy.Addr(), WithWriteTimeout(writeTimeout))
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, slow.Root().Call(ctx, "Echo", nil, []byte("x")))
	proxy.Blackhole(true)
	// The caller gives up once the frame is part written: the first
	// window (256 KiB) is out and the write waits for the peer's window
	// update. (With a 300 ms deadline instead, a loaded machine sometimes
	// spent it before the write began, making the 3 MiB argument: nothing
	// was written, and the link rightly stayed up.)
	value := pattern(3<<20, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	written := slow.co.written.Load()
	called := make(chan error, 1)
	go func() { called <- slow.Root().Call(cctx, "Echo", nil, value) }()
	testkit.Eventually(t, "the first window of the call written", func() bool {
		return slow.co.written.Load() >= written+200<<10
	})
	start := time.Now()
	cancel()
	select {
	case err = <-called:
	case <-ctx.Done():
		t.Fatal("the caller did not return when it gave up")
	}
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), writeTimeout, "the caller returns when it gives up, not at the write timeout")
	select {
	case <-slow.Closed():
	case <-time.After(writeTimeout + 5*time.Second):
		t.Fatal("the link kept a half-written frame past the write timeout")
	}
	assert.ErrorIs(t, slow.Err(), ErrWriteTimeout)
	t.Logf("closed after %v: %v", time.Since(start), slow.Err())
	proxy.Close()
}

// TestCutWritesNeverInterleave: many goroutines on one connection send
// values of sizes around maxStreamWrite (each cut into several yamux
// writes by writeAll) at once, on message streams and, with a reference
// to the receiver's object that keeps a message on the main stream, on the
// main stream; results come back the same ways. Every value arrives
// intact: no two writers' pieces interleave on a stream.
func TestCutWritesNeverInterleave(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &largeService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 120*time.Second)
	mine := &largeService{}
	sizes := []int{maxStreamWrite - 1, maxStreamWrite, maxStreamWrite + 1, 1<<20 + 7, 100, 40 << 10}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				n := sizes[(w+i)%len(sizes)]
				want := pattern(n, w*100+i)
				switch (w + i) % 3 {
				case 0: // message streams both ways
					var out []byte
					if err := cl.Root().Call(ctx, "Echo", &out, want); err != nil {
						errs <- err
						return
					}
					if !bytes.Equal(want, out) {
						errs <- fmt.Errorf("writer %d: Echo of %d bytes came back different", w, n)
						return
					}
				case 1: // the call on the main stream (the server's own root comes home)
					var out []any
					if err := cl.Root().Call(ctx, "Home", &out, cl.Root(), want); err != nil {
						errs <- err
						return
					}
					if len(out) != 2 || !bytes.Equal(want, asBytes(out[1])) {
						errs <- fmt.Errorf("writer %d: Home(root) of %d bytes came back different", w, n)
						return
					}
				case 2: // the result on the main stream (this side's object comes home)
					var out []any
					if err := cl.Root().Call(ctx, "Home", &out, mine, want); err != nil {
						errs <- err
						return
					}
					if len(out) != 2 || out[0] != any(mine) || !bytes.Equal(want, asBytes(out[1])) {
						errs <- fmt.Errorf("writer %d: Home(mine) of %d bytes came back different (%T)", w, n, out[0])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	require.NoError(t, cl.Err())
	for _, sc := range srv.Conns() {
		require.NoError(t, sc.Err())
	}
}

// asBytes is v as a byte slice, or nil.
func asBytes(v any) []byte {
	b, _ := v.([]byte)
	return b
}

// TestShrinkStreamsRacesLinkEnds lets go of the receive buffers on both
// sides, over and over, while large calls open message streams and read
// from them, and the connection ends under them: closed by either side, or
// reset (the session dies). Nothing panics, races or leaks, and every call
// either returns its value intact or fails with a link error.
func TestShrinkStreamsRacesLinkEnds(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &largeService{})
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	ctx := testkit.Ctx(t, 60*time.Second)
	for round := range 6 {
		cl := dial(t, proxy.Addr())
		require.NoError(t, cl.Root().Call(ctx, "Echo", nil, []byte("x")))
		var sc *Conn
		require.Eventually(t, func() bool {
			for _, c := range srv.Conns() {
				if c.Err() == nil {
					sc = c
				}
			}
			return sc != nil
		}, 10*time.Second, time.Millisecond)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cl.shrinkStreams()
				sc.shrinkStreams()
				runtime.Gosched()
			}
		}()
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					want := pattern(maxStreamWrite+w*1000+i, w*1000+i)
					var out []byte
					if err := cl.Root().Call(ctx, "Echo", &out, want); err != nil {
						if CodeOf(err) != Unavailable && !errors.Is(err, ErrClosed) {
							t.Errorf("round %d: a call ended with %v (%v)", round, err, CodeOf(err))
						}
						return
					}
					if !bytes.Equal(want, out) {
						t.Errorf("round %d: a value came back different", round)
						return
					}
				}
			}()
		}
		time.Sleep(150 * time.Millisecond)
		switch round % 3 {
		case 0:
			cl.Close()
		case 1:
			sc.Close()
		case 2:
			proxy.Reset()
		}
		<-cl.Done()
		<-sc.Done()
		cl.shrinkStreams() // after the end, too
		sc.shrinkStreams()
		close(stop)
		wg.Wait()
	}
}

// TestHostileMainStreamWindowBeforeHandshake: a raw yamux peer that starts
// a Hello is granted the main stream's full window (streamWindow) as soon
// as the server's handshake reads from it, before any authentication; the
// grant does not let it make the server hold more: the read guard closes
// the connection once it has sent more than a Hello could need (20 KiB),
// however much of the 1 MiB it pushes, and the server's heap does not grow
// by the window. A well-behaved client is served meanwhile.
func TestHostileMainStreamWindowBeforeHandshake(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &largeService{}, WithHandshakeTimeout(time.Minute))
	good := dial(t, addr)
	nc, err := rawDial(addr, "")
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })

	var hello []byte
	hello = binary.AppendUvarint(hello, handshakeMax)
	hello = append(hello, make([]byte, 100)...)
	require.NoError(t, rawFlood(nc, yxFrame(yxData, yxSYN, 1, uint32(len(hello)), hello), 1, hpSlack))
	// The server's answer to the SYN and its window update for stream 1.
	window := uint32(256 << 10)
	nc.SetReadDeadline(time.Now().Add(hpSlack))
	hdr := make([]byte, 12)
	for window < streamWindow {
		_, err := io.ReadFull(nc, hdr)
		require.NoError(t, err, "the server's window update for the main stream")
		if hdr[1] == yxWindowUpdate && binary.BigEndian.Uint32(hdr[4:8]) == 1 {
			window += binary.BigEndian.Uint32(hdr[8:12])
		}
	}
	nc.SetReadDeadline(time.Time{})
	t.Logf("before its handshake, the peer is granted a main-stream window of %d KiB", window>>10)

	base := liveHeap()
	peak := heapPeak(base)
	// Push all but what was already sent of the window, in 32 KiB frames.
	chunk := yxFrame(yxData, 0, 1, 32<<10, make([]byte, 32<<10))
	require.NoError(t, rawFlood(nc, chunk, int(window-uint32(len(hello)))/(32<<10), hpSlack))
	require.NoError(t, rawHungUp(nc, hpSlack), "the peer is closed for sending more than a Hello could need")
	grew := peak()
	t.Logf("the server's live heap grew by at most %d KiB", grew>>10)
	assert.Less(t, grew, int64(streamWindow/2), "the server did not buffer the window it granted")
	require.Eventually(t, func() bool { return srv.Stats().Refused >= 1 }, hpSlack, time.Millisecond)
	var out []byte
	require.NoError(t, good.Root().Call(testkit.Ctx(t, 30*time.Second), "Echo", &out, []byte("still served")))
	assert.Equal(t, "still served", string(out))
}
