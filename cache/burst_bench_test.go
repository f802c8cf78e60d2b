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
// The model's log holds the whole burst, so that the mirror never falls
// behind it (which would bring a snapshot instead of the changes): what is
// measured is what the mirror's watchers see of what it applied.
func BenchmarkBurstEvents(b *testing.B) {
	const burst = 20000
	st := newStore(cache.WithLogSize(2 * burst))
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
		for j := 0; j < burst; j++ {
			require.NoError(b, st.m.Set("k"+string(rune('a'+j%26)), Item{Count: i*burst + j}))
		}
		end := st.m.Version()
		testkit.Eventually(b, "the watcher sees the last change", func() bool { return last.Load() == end })
		events += seen.Load() - before
		changes += burst
	}
	b.ReportMetric(float64(events)/float64(changes), "events/change")
}
