package cache_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

// changeChecker checks the changes a watcher of a mirror is shown against
// what the writer of TestLeafExportedMidStreamShowsEveryChange put in
// them: every value it sets holds the version its Set makes, so that each
// change says which version it belongs to. A change not Merged is exactly
// one change: its version is one more than the previous event's, and a
// value set there holds that version. A Merged one holds the entry's state
// at its version: a value set at or before it.
type changeChecker struct {
	mu   sync.Mutex
	n    int // changes not Merged
	last uint64
	bad  []string
}

func (c *changeChecker) see(what string, version uint64, merged, deleted bool, setAt uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.bad) > 20 {
		return
	}
	switch {
	case c.last != 0 && version < c.last:
		c.bad = append(c.bad, fmt.Sprintf("%s: version %d after %d", what, version, c.last))
	case !merged && c.last != 0 && version != c.last+1:
		c.bad = append(c.bad, fmt.Sprintf("%s: a single change at %d after %d (gap or repeat)", what, version, c.last))
	case !merged && !deleted && setAt != version:
		c.bad = append(c.bad, fmt.Sprintf("%s: a single change at %d shows the value set at %d", what, version, setAt))
	case merged && !deleted && setAt > version:
		c.bad = append(c.bad, fmt.Sprintf("%s: a merged change at %d shows the value set at %d", what, version, setAt))
	}
	if !merged {
		c.n++
	}
	c.last = version
}

func (c *changeChecker) check(t *testing.T, what string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.bad, what)
	require.NotZero(t, c.n, "%s saw no single change: the test did not stream through it", what)
}

// TestLeafExportedMidStreamShowsEveryChange: a map and a value mirrored by
// a middle process that never watches them (their feeds keep no state of
// their own and publish their tails lazily) are handed out, directly and
// through a remote relay, while the writer changes them without pause, so
// that each first subscription to them, and the state their feeds take
// from the typed layer for it, lands among the upstream's batches. Every
// change a watcher downstream is shown is checked against the version it
// claims (no gap, no repeat, no value from another version), and every
// mirror ends with the model's exact entries.
func TestLeafExportedMidStreamShowsEveryChange(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	s := startServer(t, st)
	cl := connect(t, s.addr)
	ctx := testkit.Ctx(t, 90*time.Second)
	// The writer changes the keys k0 to k39; the others stay as they are
	// set here, so that only a snapshot can bring them downstream.
	for i := range 40 {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Name: "first", Count: int(st.m.Version() + 1)}))
		require.NoError(t, st.m.Set(fmt.Sprint("still", i), Item{Name: "still", Count: int(st.m.Version() + 1)}))
	}
	require.NoError(t, st.v.Set(int(st.v.Version()+1)))

	// The middle process: a leaf mirror of each model, nobody watching.
	mid := lookupMirror(t, cl)
	sref, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	var val *cache.ValueMirror[int]
	require.NoError(t, sref.Call(ctx, "Counter", &val))
	t.Cleanup(func() { val.Close() })
	reg := registry.New()
	require.NoError(t, reg.Register("holder", &leafHolder{mir: mid, val: val}))
	_, midAddr := brokertest.Serve(t, reg)
	// A relay of the middle process.
	relayCl := connect(t, midAddr)
	relay := startRelay(t, relayCl)

	// The writer, the only one: each value holds the version its Set makes.
	stopWriter := testkit.Writer(t, func(i int) {
		k := fmt.Sprint("k", i%40)
		if i%7 == 3 {
			st.m.Delete(k)
		} else {
			_ = st.m.Set(k, Item{Name: k, Count: int(st.m.Version() + 1)})
		}
		if i%2 == 0 {
			_ = st.v.Set(int(st.v.Version() + 1))
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // the batches come in bursts
		}
	})

	type down struct {
		what   string
		mir    *cache.Mirror[string, Item]
		val    *cache.ValueMirror[int]
		mc, vc *changeChecker
	}
	var downs []*down
	handOut := func(addr, what string) {
		conn, err := broker.Dial(ctx, "tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		var h *broker.Ref
		require.NoError(t, conn.Root().Call(ctx, "Lookup", &h, "holder"))
		d := &down{what: what, mc: &changeChecker{}, vc: &changeChecker{}}
		require.NoError(t, h.Call(ctx, "Mirror", &d.mir))
		t.Cleanup(func() { d.mir.Close() })
		d.mir.Changes().Connect(func(c cache.Change[string, Item]) {
			d.mc.see(what+" map", c.Version, c.Merged, c.Deleted, uint64(c.Value.Count))
		})
		require.NoError(t, h.Call(ctx, "Counter", &d.val))
		t.Cleanup(func() { d.val.Close() })
		d.val.Changes().Connect(func(c cache.Change[struct{}, int]) {
			d.vc.see(what+" value", c.Version, c.Merged, c.Deleted, uint64(c.Value))
		})
		downs = append(downs, d)
	}
	// The first hand-outs end the leaves' laziness while the batches come.
	time.Sleep(20 * time.Millisecond)
	handOut(relay.addr, "through the relay")
	handOut(midAddr, "direct")
	time.Sleep(50 * time.Millisecond)
	handOut(midAddr, "direct, later")
	time.Sleep(100 * time.Millisecond)
	stopWriter()

	testkit.Eventually(t, "the mirrors in the middle catch up", func() bool {
		return mid.Version() == st.m.Version() && val.Version() == st.v.Version()
	})
	requireEqualModel(t, st.m, mid)
	require.Equal(t, st.v.Get(), val.Get())
	for _, d := range downs {
		testkit.Eventually(t, "the mirrors "+d.what+" catch up", func() bool {
			return d.mir.Version() == st.m.Version() && d.val.Version() == st.v.Version()
		})
		requireEqualModel(t, st.m, d.mir)
		require.Equal(t, st.v.Get(), d.val.Get(), d.what)
		require.NoError(t, d.mir.Err(), d.what)
		require.NoError(t, d.val.Err(), d.what)
		// The watchers run after the versions move: wait for the last.
		testkit.Eventually(t, "the watchers "+d.what+" see the last change", func() bool {
			d.mc.mu.Lock()
			defer d.mc.mu.Unlock()
			d.vc.mu.Lock()
			defer d.vc.mu.Unlock()
			return d.mc.last == st.m.Version() && d.vc.last == st.v.Version()
		})
		d.mc.check(t, d.what+" map")
		d.vc.check(t, d.what+" value")
	}
}
