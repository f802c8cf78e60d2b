package cache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// leafHolder hands out the mirrors its process follows, which nobody
// else watches.
type leafHolder struct {
	remoteable.Referenceable
	mir *cache.Mirror[string, Item]
	val *cache.ValueMirror[int]
}

// Mirror returns the map's mirror: the caller gets a mirror of it.
func (h *leafHolder) Mirror(ctx context.Context) (*cache.Mirror[string, Item], error) {
	return h.mir, nil
}

// Counter returns the value's mirror.
func (h *leafHolder) Counter(ctx context.Context) (*cache.ValueMirror[int], error) { return h.val, nil }

// TestLeafMirrorHandedOutWhileChangesStream: a map and a value mirrored
// by a process that never watches them (their feeds keep no state: the
// typed layer holds the bytes) are handed to other clients again and
// again while a writer changes, deletes and adds keys without pause,
// across outages of the middle process's link longer than the log (a
// snapshot resync each time, racing the hand-outs). Each mirror downstream
// sees its versions only go forward, no error, and ends with the model's
// exact entries at its version; so do the mirrors in the middle.
func TestLeafMirrorHandedOutWhileChangesStream(t *testing.T) {
	leakcheck.Check(t)
	st := newStore(cache.WithLogSize(8))
	s := startServer(t, st)
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, 90*time.Second)
	for i := range 30 {
		require.NoError(t, st.m.Set(fmt.Sprint("k", i), Item{Name: "first", Count: i}))
	}
	mid := lookupMirror(t, cl)
	sref, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	var val *cache.ValueMirror[int]
	require.NoError(t, sref.Call(ctx, "Counter", &val))
	t.Cleanup(func() { val.Close() })

	reg := registry.New()
	require.NoError(t, reg.Register("holder", &leafHolder{mir: mid, val: val}))
	_, addr := brokertest.Serve(t, reg)

	// The writer: keys come, change and go; the counter counts.
	stopWriter := testkit.Writer(t, func(i int) {
		k := fmt.Sprint("k", i%40)
		if i%7 == 3 {
			st.m.Delete(k)
		} else {
			_ = st.m.Set(k, Item{Name: k, Count: i})
		}
		if i%5 == 0 {
			_ = st.v.Set(i)
		}
		if i%3 == 0 {
			time.Sleep(200 * time.Microsecond)
		}
	})

	type down struct {
		mir *cache.Mirror[string, Item]
		val *cache.ValueMirror[int]
		rec *recorder
	}
	var downs []down
	handOut := func() {
		conn, err := broker.Dial(ctx, "tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		var h *broker.Ref
		require.NoError(t, conn.Root().Call(ctx, "Lookup", &h, "holder"))
		var d down
		require.NoError(t, h.Call(ctx, "Mirror", &d.mir))
		t.Cleanup(func() { d.mir.Close() })
		d.rec = watch(d.mir, nil)
		require.NoError(t, h.Call(ctx, "Counter", &d.val))
		t.Cleanup(func() { d.val.Close() })
		downs = append(downs, d)
	}
	for round := range 4 {
		// An outage of the middle process's link, longer than the log,
		// with hand-outs just before it ends and while it resyncs.
		p.Reset()
		p.Refuse(true)
		testkit.Eventually(t, "the mirror in the middle goes stale", mid.Stale)
		time.Sleep(20 * time.Millisecond)
		if round%2 == 0 {
			handOut()
		}
		p.Restore()
		handOut()
		testkit.Eventually(t, "the mirror in the middle resumes", func() bool { return !mid.Stale() })
	}
	handOut()
	stopWriter()

	testkit.Eventually(t, "the mirror in the middle catches up", func() bool {
		return mid.Version() == st.m.Version() && val.Version() == st.v.Version()
	})
	requireEqualModel(t, st.m, mid)
	require.NoError(t, mid.Err())
	require.Equal(t, st.v.Get(), val.Get())
	for i, d := range downs {
		testkit.Eventually(t, fmt.Sprint("mirror downstream ", i, " catches up"), func() bool {
			return d.mir.Version() == st.m.Version() && d.val.Version() == st.v.Version()
		})
		requireEqualModel(t, st.m, d.mir)
		require.NoError(t, d.mir.Err(), "mirror downstream %d", i)
		require.NoError(t, d.val.Err(), "mirror downstream %d", i)
		require.Equal(t, st.v.Get(), d.val.Get(), "value downstream %d", i)
		d.rec.mu.Lock()
		require.Empty(t, d.rec.bad, "mirror downstream %d", i)
		d.rec.mu.Unlock()
	}
}
