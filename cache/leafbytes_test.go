package cache

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// leafHolder hands out a mirror its process follows.
type leafHolder[K comparable] struct {
	remoteable.Referenceable
	mir *Mirror[K, int]
}

// Mirror returns the mirror: the caller gets a mirror of it.
func (h *leafHolder[K]) Mirror(ctx context.Context) (*Mirror[K, int], error) { return h.mir, nil }

// feedBytes returns a feed's entries, key bytes to value bytes, and its
// version.
func feedBytes(f *feed.Feed) (map[string]string, uint64) {
	out := map[string]string{}
	var v uint64
	f.Read(func(_ string, version uint64, st feed.State) {
		v = version
		for k, val := range st.All() {
			out[string(k)] = string(val)
		}
	})
	return out, v
}

// longInt encodes n (< 65536) with a two-byte head, as another
// implementation may: not the bytes Tether itself would write.
func longInt(n int) []byte { return []byte{0x19, byte(n >> 8), byte(n)} }

// checkLeafKeepsBytes runs one model of keys, given as the bytes a source
// that is not Tether wrote (non-minimal heads, float16, a struct's fields
// out of order), through a mirror nobody follows at first (its feed keeps
// no state: the typed layer holds the bytes): it applies changes,
// deletions and a snapshot resync after an outage longer than the log;
// then it is handed to a second client while changes keep coming. At each
// point the mirror's feed, and the feed of the mirror downstream, hold
// exactly the source's bytes, at the source's version: the keys are never
// re-encoded from the typed values.
func checkLeafKeepsBytes[K comparable](t *testing.T, keys [][]byte) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	src := feed.New(4, nil)
	reg := registry.New()
	require.NoError(t, reg.Register("feed", src.Publisher()))
	_, addr := brokertest.Serve(t, reg)
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	cl, err := remote.Connect(ctx, "tcp", p.Addr(),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithBroker(broker.WithDeadPeerTimeout(500*time.Millisecond), broker.WithHandshakeTimeout(time.Second)))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	ref, err := cl.Registry().Lookup(ctx, "feed")
	require.NoError(t, err)

	round := 0
	change := func() {
		round++
		for i, k := range keys {
			if (i+round)%3 == 0 {
				src.Delete(k)
			} else {
				src.Set(k, longInt(round*100+i))
			}
		}
	}
	change()
	mid := NewMirror[K, int]()
	require.NoError(t, mid.AttachCache(ctx, ref))
	t.Cleanup(func() { mid.Close() })
	same := func(what string, m *Mirror[K, int]) {
		t.Helper()
		f := m.fl.Load().Feed()
		testkit.Eventually(t, what+" catches up", func() bool { return f.Version() == src.Version() })
		want, wv := feedBytes(src)
		got, gv := feedBytes(f)
		require.Equal(t, wv, gv, what+": version")
		require.Equal(t, want, got, what+": the source's bytes")
		require.Equal(t, len(want), m.Len(), what+": one typed entry per key")
		require.Equal(t, wv, m.Version(), what+": the typed layer's version")
	}
	change()
	change()
	require.Eventually(t, func() bool { return mid.Version() == src.Version() }, 30*time.Second, time.Millisecond)
	mid.fl.Load().Feed().Read(func(string, uint64, feed.State) {}) // rebuilt from the typed entries...
	same("the leaf mirror", mid)
	change()
	same("the leaf mirror", mid)

	// ...and dropped again by a resync after an outage longer than the log.
	p.Reset()
	p.Refuse(true)
	testkit.Eventually(t, "the mirror goes stale", mid.Stale)
	for range 4 {
		change()
	}
	p.Restore()
	testkit.Eventually(t, "the mirror resumes", func() bool { return !mid.Stale() && mid.Version() == src.Version() })
	change()
	require.Eventually(t, func() bool { return mid.Version() == src.Version() }, 30*time.Second, time.Millisecond)

	// Handed on while changes keep coming.
	h := holderRef(t, ctx, mid)
	stop := make(chan struct{})
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			select {
			case <-stop:
				return
			default:
			}
			change()
			time.Sleep(time.Millisecond)
		}
	}()
	var downs []*Mirror[K, int]
	for range 3 {
		var down *Mirror[K, int]
		require.NoError(t, h.Call(ctx, "Mirror", &down))
		t.Cleanup(func() { down.Close() })
		downs = append(downs, down)
	}
	close(stop)
	<-wrote
	same("the mirror in the middle", mid)
	for i, d := range downs {
		same(fmt.Sprint("mirror downstream ", i), d)
	}

	// An outage of the middle mirror's source, now followed: its
	// mirrors downstream get the resync's difference.
	p.Reset()
	p.Refuse(true)
	testkit.Eventually(t, "the mirror goes stale", mid.Stale)
	for range 4 {
		change()
	}
	p.Restore()
	same("the mirror in the middle", mid)
	for i, d := range downs {
		same(fmt.Sprint("mirror downstream ", i), d)
	}
}

// text encodes s with a head of the given length (1, 2, 3 or 5 bytes),
// minimal or not.
func text(s string, head int) []byte {
	n := len(s)
	var b []byte
	switch head {
	case 1:
		b = []byte{0x60 | byte(n)}
	case 2:
		b = []byte{0x78, byte(n)}
	case 3:
		b = []byte{0x79, byte(n >> 8), byte(n)}
	default:
		b = []byte{0x7a, 0, 0, byte(n >> 8), byte(n)}
	}
	return append(b, s...)
}

func TestLeafMirrorKeepsTheSourcesStringKeyBytes(t *testing.T) {
	var keys [][]byte
	for i := range 12 {
		keys = append(keys, text(fmt.Sprint("key", i), 1+i%4))
	}
	checkLeafKeepsBytes[string](t, keys)
}

func TestLeafMirrorKeepsTheSourcesFloatKeyBytes(t *testing.T) {
	keys := [][]byte{
		{0xf9, 0x3e, 0x00},                   // 1.5 as float16
		{0xfa, 0x40, 0x20, 0x00, 0x00},       // 2.5 as float32
		{0xfb, 0x40, 0x0c, 0, 0, 0, 0, 0, 0}, // 3.5 as float64
		{0xf9, 0x44, 0x00},                   // 4 as float16
		{0xfa, 0x40, 0xb0, 0x00, 0x00},       // 5.5 as float32
		{0xfb, 0x40, 0x1a, 0, 0, 0, 0, 0, 0}, // 6.5 as float64
	}
	checkLeafKeepsBytes[float64](t, keys)
}

// point is a struct key.
type point struct{ X, Y int }

func TestLeafMirrorKeepsTheSourcesStructKeyBytes(t *testing.T) {
	var keys [][]byte
	for i := range 8 {
		// {"Y": i, "X": 1}: the fields in the other order, Y's text
		// with a long head.
		keys = append(keys, append(append(append([]byte{0xa2}, text("Y", 2)...), longInt(i)...), append(text("X", 1), 0x01)...))
	}
	checkLeafKeepsBytes[point](t, keys)
}

// TestNaNKeyNeverReachesAMirrorsEntries: a key that is not equal to itself
// (a NaN, from a source that is not Tether) could never be found nor
// deleted in a mirror's entries, which a leaf mirror's feed rebuilds its
// state from when handed on: a NaN key set and then deleted by the source
// came back to life downstream. The mirror refuses such a key, loudly
// (Err), and once the source no longer holds it follows again, and the
// mirror downstream holds exactly the source's bytes.
func TestNaNKeyNeverReachesAMirrorsEntries(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	src := feed.New(4, nil)
	ref := followFeed(t, ctx, src)
	one := []byte{0xf9, 0x3c, 0x00} // 1.0 as float16
	src.Set(one, longInt(1))
	mid := NewMirror[float64, int]()
	require.NoError(t, mid.AttachCache(ctx, ref))
	t.Cleanup(func() { mid.Close() })

	nan := []byte{0xf9, 0x7e, 0x00} // NaN as float16
	src.Set(nan, longInt(2))
	src.Set(one, longInt(3))
	testkit.Eventually(t, "the mirror refuses the NaN key, loudly", func() bool { return mid.Err() != nil })
	require.ErrorContains(t, mid.Err(), "not equal to itself")
	src.Delete(nan)
	for i := range 6 { // past the log: a mirror refusing the NaN's step resyncs
		src.Set(one, longInt(4+i))
	}
	testkit.Eventually(t, "the mirror catches up", func() bool { return mid.Version() == src.Version() })
	require.Equal(t, 1, mid.Len(), "no entry for the deleted NaN key")

	h := holderRef(t, ctx, mid)
	var down *Mirror[float64, int]
	require.NoError(t, h.Call(ctx, "Mirror", &down))
	t.Cleanup(func() { down.Close() })
	want, wv := feedBytes(src)
	testkit.Eventually(t, "the mirror downstream catches up", func() bool { return down.Version() == wv })
	got, _ := feedBytes(down.fl.Load().Feed())
	require.Equal(t, want, got, "the mirror downstream holds the source's bytes")
	require.Equal(t, 1, down.Len())
}

// TestMapRefusesANaNKey: a map refuses a key not equal to itself, which it
// could never find nor delete, rather than send it to its mirrors.
func TestMapRefusesANaNKey(t *testing.T) {
	m := NewMap[float64, int]()
	require.ErrorIs(t, m.Set(math.NaN(), 1), broker.ErrBadArguments)
	type withFloat struct{ F float64 }
	w := NewMap[withFloat, int]()
	require.ErrorIs(t, w.Set(withFloat{math.NaN()}, 1), broker.ErrBadArguments)
	a := NewMap[any, int]()
	require.ErrorIs(t, a.Set(map[string]int{"a": 1}, 1), broker.ErrBadArguments, "a key a map cannot hold")
	require.NoError(t, m.Set(1.5, 1))
	require.Equal(t, 1, m.Len())
	require.Equal(t, uint64(1), m.Version())
}

// TestMirrorRefusesAKeyItCannotCompare: a source that is not Tether sends
// a map as a key to a Mirror[any, V]: decoded into the interface it cannot
// be a Go map's key. The mirror refuses it, loudly (Err), rather than
// panic in its follower's goroutine, and follows again once the source
// deleted it.
func TestMirrorRefusesAKeyItCannotCompare(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	src := feed.New(4, nil)
	ref := followFeed(t, ctx, src)
	one := text("one", 1)
	src.Set(one, longInt(1))
	mir := NewMirror[any, int]()
	require.NoError(t, mir.AttachCache(ctx, ref))
	t.Cleanup(func() { mir.Close() })

	m := append(append([]byte{0xa1}, text("a", 1)...), 0x01) // {"a": 1}
	src.Set(m, longInt(2))
	testkit.Eventually(t, "the mirror refuses the key, loudly", func() bool { return mir.Err() != nil })
	require.ErrorContains(t, mir.Err(), "cannot be compared")
	src.Delete(m)
	for i := range 6 {
		src.Set(one, longInt(3+i))
	}
	testkit.Eventually(t, "the mirror follows again", func() bool { return mir.Version() == src.Version() })
	v, ok := mir.Get("one")
	require.True(t, ok)
	require.Equal(t, 8, v)
	require.Equal(t, 1, mir.Len())
}

// TestSignedZeroKeysAreOneKeyOnTheWire: 0.0 and -0.0 are one key of a
// Map[float64, V] (Go's == says so) but two encodings. The map's feed
// must hold the key once, with the bytes it first had, as its entries
// do: before, it held both encodings, so a mirror taken fresh showed an
// entry the map no longer had, and a leaf mirror's feed, rebuilt from
// its typed entries, held other bytes than the map's feed.
func TestSignedZeroKeysAreOneKeyOnTheWire(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	m := NewMap[float64, int]()
	negZero := math.Copysign(0, -1)
	require.NoError(t, m.Set(0, 1))
	require.NoError(t, m.Set(negZero, 2))
	require.NoError(t, m.Set(2.5, 3))
	require.Equal(t, 2, m.Len())
	srcBytes, _ := feedBytes(m.f)
	require.Len(t, srcBytes, 2, "the map's feed holds each key once")

	reg := registry.New()
	require.NoError(t, reg.Register("map", &floatStore{m: m}))
	_, addr := brokertest.Serve(t, reg)
	conn, err := broker.Dial(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var st *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &st, "map"))
	var mid *Mirror[float64, int]
	require.NoError(t, st.Call(ctx, "Model", &mid))
	t.Cleanup(func() { mid.Close() })
	require.True(t, m.Delete(negZero))
	require.NoError(t, m.Set(3.5, 4))
	testkit.Eventually(t, "the mirror catches up", func() bool { return mid.Version() == m.Version() })
	require.Equal(t, 2, mid.Len())

	h := holderRef(t, ctx, mid)
	var down *Mirror[float64, int]
	require.NoError(t, h.Call(ctx, "Mirror", &down))
	t.Cleanup(func() { down.Close() })
	var fresh *Mirror[float64, int]
	require.NoError(t, st.Call(ctx, "Model", &fresh))
	t.Cleanup(func() { fresh.Close() })
	want, wv := feedBytes(m.f)
	for name, x := range map[string]*Mirror[float64, int]{"the mirror handed on": down, "a fresh mirror": fresh} {
		testkit.Eventually(t, name+" catches up", func() bool { return x.Version() == wv })
		got, _ := feedBytes(x.fl.Load().Feed())
		require.Equal(t, want, got, name+": the map's bytes")
		require.Equal(t, m.Len(), x.Len(), name+": the map's entries")
	}
}

// floatStore publishes a Map[float64, int].
type floatStore struct {
	remoteable.Referenceable
	m *Map[float64, int]
}

// Model returns the map: the caller gets a mirror.
func (s *floatStore) Model(ctx context.Context) (*Map[float64, int], error) { return s.m, nil }

// followFeed serves src's publisher as the manager "feed" and returns a
// lasting client's reference to it.
func followFeed(t *testing.T, ctx context.Context, src *feed.Feed) *remote.Ref {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("feed", src.Publisher()))
	_, addr := brokertest.Serve(t, reg)
	cl, err := remote.Connect(ctx, "tcp", addr,
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	ref, err := cl.Registry().Lookup(ctx, "feed")
	require.NoError(t, err)
	return ref
}

// holderRef serves mid as the manager "holder" and returns a reference to
// it over a connection of its own: its Mirror method hands mid on.
func holderRef[K comparable](t *testing.T, ctx context.Context, mid *Mirror[K, int]) *broker.Ref {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("holder", &leafHolder[K]{mir: mid}))
	_, addr := brokertest.Serve(t, reg)
	conn, err := broker.Dial(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var h *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &h, "holder"))
	return h
}
