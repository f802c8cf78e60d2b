package broker

import (
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
