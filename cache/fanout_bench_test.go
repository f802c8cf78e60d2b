package cache_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// fanStore publishes one model of counters for BenchmarkFanOut.
type fanStore struct {
	remoteable.Referenceable
	m *cache.Map[string, int]
}

// Model returns the model: each caller gets a mirror.
func (s *fanStore) Model(ctx context.Context) (*cache.Map[string, int], error) { return s.m, nil }

// BenchmarkFanOut measures one cache.Map followed by many mirrors over
// loopback TCP (issue 15, target 1): b.N Sets on 1,000 keys by one writer,
// then the wait until every mirror holds the last change. It reports the
// writer's rate (Sets/s) and the time from the first Set until every mirror
// held the last one (ms-to-all). Run it with a fixed count, as the issue
// did: -benchtime 20000x.
func BenchmarkFanOut(b *testing.B) {
	for _, c := range []struct{ mirrors, conns int }{{1, 1}, {100, 10}, {1000, 100}} {
		b.Run(fmt.Sprintf("mirrors=%d/conns=%d", c.mirrors, c.conns), func(b *testing.B) {
			benchFanOut(b, c.mirrors, c.conns)
		})
	}
}

// benchFanOut runs one cell of BenchmarkFanOut.
func benchFanOut(b *testing.B, mirrors, conns int) {
	st := &fanStore{m: cache.NewMap[string, int]()}
	addr := serveStore(b, st)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mirs := make([]*cache.Mirror[string, int], 0, mirrors)
	for i := range conns {
		conn, err := broker.Dial(ctx, "tcp", addr)
		require.NoError(b, err)
		defer conn.Close()
		var ref *broker.Ref
		require.NoError(b, conn.Root().Call(ctx, "Lookup", &ref, "store"))
		for j := i; j < mirrors; j += conns {
			var mir *cache.Mirror[string, int]
			require.NoError(b, ref.Call(ctx, "Model", &mir))
			defer mir.Close()
			mirs = append(mirs, mir)
		}
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}

	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		require.NoError(b, st.m.Set(keys[i%len(keys)], i))
	}
	wrote := time.Since(start)
	last := st.m.Version()
	for _, mir := range mirs {
		for mir.Version() < last {
			require.NoError(b, ctx.Err(), "a mirror never reached the last change")
			time.Sleep(time.Millisecond)
		}
	}
	all := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/wrote.Seconds(), "Sets/s")
	b.ReportMetric(float64(all.Milliseconds()), "ms-to-all")
}

// serveStore serves st as the manager "store" on a loopback listener,
// stopped when b ends, and returns its address.
func serveStore(b *testing.B, st *fanStore) string {
	b.Helper()
	reg := registry.New()
	require.NoError(b, reg.Register("store", st))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	srv := broker.NewServer(reg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	b.Cleanup(func() { srv.Close(); <-errc })
	return ln.Addr().String()
}
