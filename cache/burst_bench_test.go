package cache_test

import (
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/testkit"
)

// BenchmarkBurstEvents measures what a no-op watcher on one mirror sees of a
// burst of 20,000 Sets on the model: the events/change metric is 1 when it
// sees every change as an event of its own, less when events were merged.
// With log=burst the model's log holds the whole burst, so that the mirror
// never falls behind it: what is measured is what the mirror's watchers see
// of what it applied. With log=default (4096) a burst of local Sets, a
// microsecond each, can outrun the subscription by more than the log, and
// the mirror then gets a snapshot (whose differences are merged events).
func BenchmarkBurstEvents(b *testing.B) {
	b.Run("log=burst", func(b *testing.B) { benchBurst(b, cache.WithLogSize(2*benchBurstSize)) })
	b.Run("log=default", func(b *testing.B) { benchBurst(b) })
}

// benchBurstSize is the number of Sets BenchmarkBurstEvents makes at once.
const benchBurstSize = 20000

// benchBurst runs bursts on a model made with opts, watched through one
// mirror.
func benchBurst(b *testing.B, opts ...cache.Option) {
	st := newStore(opts...)
	s := startServer(b, st)
	cl := connect(b, s.addr)
	mir := lookupMirror(b, cl)
	var seen, last atomic.Uint64
	mir.Changed.Connect(func(c cache.Change[string, Item]) {
		seen.Add(1)
		last.Store(c.Version)
	})
	var events, changes uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		before := seen.Load()
		for j := 0; j < benchBurstSize; j++ {
			require.NoError(b, st.m.Set("k"+string(rune('a'+j%26)), Item{Count: i*benchBurstSize + j}))
		}
		end := st.m.Version()
		testkit.Eventually(b, "the watcher sees the last change", func() bool { return last.Load() == end })
		events += seen.Load() - before
		changes += benchBurstSize
	}
	b.ReportMetric(float64(events)/float64(changes), "events/change")
}
