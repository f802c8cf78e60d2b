package feed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestSharedSnapshotOfLargeValuesUnderWrites: a mirror attaches, across a
// link of 16 MiB/s (faultnet), to a model of 32 MiB in 512 values of 64
// KiB while the owner keeps writing such values at 4 MiB/s. Its snapshot
// (the shared kind, the default) takes two seconds or more to send (7-10 s
// under the race detector), during which the owner writes the default
// log's 8 MiB or more: the log must
// keep the steps that follow the snapshot's entries, as it does for a
// snapshot of the subscription's own, or the snapshot starts again for
// ever and the mirror never attaches (it did not in 30 s before the fix;
// with a count-only log of 4,096, the old default, it attached in about 5
// s).
func TestSharedSnapshotOfLargeValuesUnderWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 32 MiB through a 16 MiB/s link")
	}
	leakcheck.Check(t)
	const entries = 512
	src := New(0, nil)
	val := func(i int) []byte { return enc(bytes.Repeat([]byte{byte(i)}, 64<<10)) }
	for i := range entries {
		src.Set(enc(fmt.Sprint("k", i)), val(i))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(src.Publisher())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer func() { srv.Close(); <-errc }()
	proxy, err := faultnet.New(ln.Addr().String())
	require.NoError(t, err)
	defer proxy.Close()
	proxy.SetBandwidth(16 << 20)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(16 * time.Millisecond):
				// 4 MiB/s: at 8 MiB/s, a CI machine short of CPU sent
				// the snapshot slower than the writes outgrew the log.
			}
			src.Set(enc(fmt.Sprint("k", i%entries)), val(i))
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.Dial(ctx, "tcp", proxy.Addr())
	require.NoError(t, err)
	defer conn.Close()
	fl := NewFollower(conn.Root(), nil, Options{})
	defer fl.Close()
	t0 := time.Now()
	require.NoError(t, fl.Attach(ctx), "no snapshot completed while the owner wrote %d changes", src.Version())
	require.NotEmpty(t, fl.Feed().Epoch())
	t.Logf("attached in %v, at version %d of %d", time.Since(t0), fl.Feed().Version(), src.Version())
	testkit.Eventually(t, "no subscription counted in a shared snapshot once done", func() bool { return src.sharing.Load() == 0 })
}
