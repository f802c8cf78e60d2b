package cache_test

import (
	"context"
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
	"github.com/tether-go/tether/remoteable"
)

// anyStore publishes a Map[any, int].
type anyStore struct {
	remoteable.Referenceable
	m *cache.Map[any, int]
}

// Model returns the map: the caller gets a mirror.
func (s *anyStore) Model(ctx context.Context) (*cache.Map[any, int], error) { return s.m, nil }

// TestKeysThatEncodeAlikeAreOneKeyOrRefused: two keys a Go map tells apart
// but whose encodings are the same bytes (int 1 and uint 1 in a map keyed
// by any) would be one entry to the feed and to every mirror, which know
// keys by their bytes, and two to the map: the mirrors would no longer
// show the map, and a Delete of the second would make a change the feed
// never made (version 0: watchers saw versions 1 2 3 0 4, the map held two
// entries and its mirror one). The map refuses the second key, loudly,
// and stays as its mirrors show it.
func TestKeysThatEncodeAlikeAreOneKeyOrRefused(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 60*time.Second)
	m := cache.NewMap[any, int]()
	var mu sync.Mutex
	var versions []uint64
	m.Changes().Connect(func(c cache.Change[any, int]) {
		mu.Lock()
		defer mu.Unlock()
		versions = append(versions, c.Version)
	})
	reg := registry.New()
	require.NoError(t, reg.Register("map", &anyStore{m: m}))
	_, addr := brokertest.Serve(t, reg)
	conn, err := broker.Dial(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var st *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &st, "map"))
	var mir *cache.Mirror[any, int]
	require.NoError(t, st.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })

	require.NoError(t, m.Set(int(1), 10))
	err = m.Set(uint(1), 20)
	require.ErrorIs(t, err, broker.ErrBadArguments, "uint 1 encodes as int 1 does")
	require.NoError(t, m.Set(int64(2), 30))
	require.ErrorIs(t, m.Set(int(2), 40), broker.ErrBadArguments)
	require.Equal(t, 2, m.Len())
	require.False(t, m.Delete(uint(1)), "never set")
	require.True(t, m.Delete(int(1)))
	require.NoError(t, m.Set(uint(1), 50), "the bytes are free again")

	testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == m.Version() })
	require.Equal(t, m.Len(), mir.Len(), "the mirror holds what the map holds")
	v, ok := mir.Get(int64(1)) // how the mirror decodes a small integer into any
	require.True(t, ok)
	require.Equal(t, 50, v)
	v, ok = mir.Get(int64(2))
	require.True(t, ok)
	require.Equal(t, 30, v)
	testkit.Eventually(t, "the watcher sees the last change", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(versions) > 0 && versions[len(versions)-1] == m.Version()
	})
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []uint64{1, 2, 3, 4}, versions, "every change at the version after the last")
}
