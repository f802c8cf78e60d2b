package cache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
)

// BenchmarkSet measures the writer's own cost of Map.Set (ns/op,
// allocs/op): Sets of int values on 1,000 string keys, as BenchmarkFanOut
// makes them, on a map with no subscriber (none), with one no-op watcher
// (watcher), and followed by one live mirror over loopback TCP (mirror;
// the allocations of the subscription's pusher count too, as they happen
// while the writer runs). The mirror must hold the last change before the
// benchmark ends, untimed.
func BenchmarkSet(b *testing.B) {
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	run := func(b *testing.B, m *cache.Map[string, int]) {
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := m.Set(keys[i%len(keys)], i); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
	}
	b.Run("none", func(b *testing.B) { run(b, cache.NewMap[string, int]()) })
	b.Run("watcher", func(b *testing.B) {
		m := cache.NewMap[string, int]()
		stop := m.Changed.Connect(func(cache.Change[string, int]) {})
		defer stop()
		run(b, m)
	})
	b.Run("mirror", func(b *testing.B) {
		st := &fanStore{m: cache.NewMap[string, int]()}
		addr := serveStore(b, st)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		conn, err := broker.Dial(ctx, "tcp", addr)
		require.NoError(b, err)
		defer conn.Close()
		var ref *broker.Ref
		require.NoError(b, conn.Root().Call(ctx, "Lookup", &ref, "store"))
		var mir *cache.Mirror[string, int]
		require.NoError(b, ref.Call(ctx, "Model", &mir))
		defer mir.Close()
		run(b, st.m)
		last := st.m.Version()
		for mir.Version() < last {
			require.NoError(b, ctx.Err(), "the mirror never reached the last change")
			time.Sleep(time.Millisecond)
		}
	})
}
