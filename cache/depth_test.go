package cache_test

import (
	"context"
	"net"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// nest returns a list nested n levels deep.
func nest(n int) any {
	var v any = int64(1)
	for i := 0; i < n; i++ {
		v = []any{v}
	}
	return v
}

// deepStore publishes a model of generic values.
type deepStore struct {
	remoteable.Referenceable
	m *cache.Map[string, any]
}

func (*deepStore) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Model": {Idempotent: true}}
}

func (s *deepStore) Model(ctx context.Context) (*cache.Map[string, any], error) { return s.m, nil }

// Put sets key to a list nested depth levels, returning Set's error.
func (s *deepStore) Put(ctx context.Context, key string, depth int) error {
	return s.m.Set(key, nest(depth))
}

// TestModelRefusesWhatItsMirrorsCouldNotReceive: a model holds no key or
// value deeper than its mirrors can receive inside a cache batch. Set of
// the deepest value that fits reaches a direct mirror and one behind a
// relay, as a change and in a snapshot; one level more is refused with
// ErrTooDeep, here and for a remote caller, the model unchanged, and no
// mirror ever goes stale over it.
func TestModelRefusesWhatItsMirrorsCouldNotReceive(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	ds := &deepStore{m: cache.NewMap[string, any]()}
	reg := registry.New()
	require.NoError(t, reg.Register("deep", ds))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{srv: broker.NewServer(reg), addr: ln.Addr().String(), ln: ln, errc: make(chan error, 1)}
	go func() { s.errc <- s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	relay := startRelay(t, connect(t, s.addr))

	conn, err := broker.Dial(ctx, "tcp", s.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	direct, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "deep")
	require.NoError(t, err)
	relayed, err := connect(t, relay.addr).Registry().Lookup(ctx, "deep")
	require.NoError(t, err)

	var stale atomic.Int32
	mirror := func(c remoteable.Caller) *cache.Mirror[string, any] {
		var mir *cache.Mirror[string, any]
		require.NoError(t, c.Call(ctx, "Model", &mir))
		t.Cleanup(func() { mir.Close() })
		mir.StaleChanged.Connect(func(s bool) {
			if s {
				stale.Add(1)
			}
		})
		return mir
	}
	mirrors := []*cache.Mirror[string, any]{mirror(direct), mirror(relayed)}
	synced := func(mirs []*cache.Mirror[string, any]) func() bool {
		return func() bool {
			for _, m := range mirs {
				if m.Version() != ds.m.Version() {
					return false
				}
			}
			return true
		}
	}

	require.NoError(t, ds.m.Set("fits", nest(feed.EntryDepth)), "the deepest value that fits")
	testkit.Eventually(t, "the mirrors receive it as a change", synced(mirrors))
	for _, m := range mirrors {
		v, ok := m.Get("fits")
		require.True(t, ok)
		assert.Equal(t, nest(feed.EntryDepth), v)
	}

	version := ds.m.Version()
	err = ds.m.Set("deep", nest(feed.EntryDepth+1))
	require.ErrorIs(t, err, broker.ErrTooDeep)
	assert.Contains(t, err.Error(), "flatten it or store it as bytes")
	keyed := cache.NewMap[any, int]()
	require.NoError(t, keyed.Set(nestArray(feed.EntryDepth), 1))
	require.ErrorIs(t, keyed.Set(nestArray(feed.EntryDepth+1), 1), broker.ErrTooDeep, "a key too")
	err = direct.Call(ctx, "Put", nil, "remote", feed.EntryDepth+1)
	require.ErrorIs(t, err, broker.ErrTooDeep, "a remote caller sees the same error")
	var re *broker.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "tether.too-deep", re.Name)
	assert.Equal(t, version, ds.m.Version(), "nothing changed")
	_, held := ds.m.Get("deep")
	assert.False(t, held)

	val := cache.NewValue[any](int64(0))
	require.ErrorIs(t, val.Set(nest(feed.EntryDepth+1)), broker.ErrTooDeep)
	assert.Equal(t, int64(0), val.Get())

	require.NoError(t, ds.m.Set("after", 2))
	mirrors = append(mirrors, mirror(direct), mirror(relayed)) // these two start from a snapshot
	testkit.Eventually(t, "every mirror is in sync", synced(mirrors))
	for _, m := range mirrors {
		assert.Equal(t, 2, m.Len())
		assert.False(t, m.Stale())
		assert.NoError(t, m.Err())
	}
	assert.Zero(t, stale.Load(), "no mirror lost its subscription")
	assert.NoError(t, conn.Err())
}

// nestArray returns an array nested n levels deep: a comparable value, so
// it can be a key.
func nestArray(n int) any {
	v := reflect.ValueOf(1)
	for i := 0; i < n; i++ {
		a := reflect.New(reflect.ArrayOf(1, v.Type())).Elem()
		a.Index(0).Set(v)
		v = a
	}
	return v.Interface()
}
