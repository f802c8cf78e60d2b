package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = slow.Root().Call(cctx, "Echo", nil, pattern(3<<20, 1))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second, "the caller returns by its deadline")
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
