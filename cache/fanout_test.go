package cache_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestFanOutUnderWrites: one writer changes a model as fast as it can
// while many mirrors on several connections follow it, and the links of
// one connection are cut twice meanwhile (its mirrors resubscribe). Every
// mirror ends holding exactly the model's state at its last version, and
// none sees its version go back. The mirrors fall behind the log and catch
// up through the shared snapshots and shared batches of steps of the live
// tail, and those that resubscribe through the first-batch path, so all
// three are exercised under -race against a running writer.
func TestFanOutUnderWrites(t *testing.T) {
	leakcheck.Check(t)
	conns, perConn, writes := 4, 6, 20000
	if raceEnabled {
		writes = 5000
	}
	st := newStore(cache.WithLogSize(256))
	s := startServer(t, st)
	ctx := testkit.Ctx(t, 90*time.Second)

	type follower struct {
		mir  *cache.Mirror[string, Item]
		mu   sync.Mutex
		back string // a version that went back, if any
		last uint64
	}
	var fs []*follower
	proxies := make([]interface{ Reset() }, conns)
	for i := range conns {
		p := proxyTo(t, s.addr)
		proxies[i] = p
		cl := connect(t, p.Addr())
		ref, err := cl.Registry().Lookup(ctx, "store")
		require.NoError(t, err)
		for range perConn {
			f := &follower{}
			require.NoError(t, ref.Call(ctx, "Model", &f.mir))
			t.Cleanup(func() { f.mir.Close() })
			f.mir.Changed.Connect(func(ev cache.Change[string, Item]) {
				f.mu.Lock()
				defer f.mu.Unlock()
				if ev.Version < f.last && f.back == "" {
					f.back = fmt.Sprint(f.last, " then ", ev.Version)
				}
				f.last = ev.Version
			})
			fs = append(fs, f)
		}
	}

	for i := range writes {
		k := fmt.Sprint("k", i%300)
		if i%7 == 3 {
			st.m.Delete(k)
		} else {
			require.NoError(t, st.m.Set(k, Item{Name: k, Count: i}))
		}
		if i == writes/3 || i == 2*writes/3 {
			proxies[0].Reset() // the mirrors of connection 0 resubscribe
		}
	}
	last := st.m.Version()
	want := map[string]Item{}
	st.m.Range(func(k string, v Item) bool { want[k] = v; return true })
	for i, f := range fs {
		testkit.Eventually(t, fmt.Sprint("mirror ", i, " at the last version"), func() bool {
			return f.mir.Version() == last && !f.mir.Stale()
		})
		got := map[string]Item{}
		f.mir.Range(func(k string, v Item) bool { got[k] = v; return true })
		require.Equal(t, want, got, "mirror %d", i)
		f.mu.Lock()
		require.Empty(t, f.back, "mirror %d: a version went back", i)
		f.mu.Unlock()
	}
}
