package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/remoteable"
)

// settings is a manager that embeds its model to use it: the model's
// methods (Set, Delete, ...) are its own business, not its peers'.
type settings struct {
	remoteable.Referenceable
	*cache.Map[string, int]
}

// Model hands out the model: peers get a read-only mirror.
func (s *settings) Model(ctx context.Context) (*cache.Map[string, int], error) { return s.Map, nil }

// Lookup is the manager's own read method.
func (s *settings) Lookup(ctx context.Context, key string) (int, error) {
	v, _ := s.Get(key)
	return v, nil
}

// openSettings opts Set in, with no options: its peers may call it.
type openSettings struct{ settings }

func (*openSettings) RemoteMethods() remoteable.Methods { return remoteable.Methods{"Set": {}} }

// guardedSettings shadows Set with its own, which checks what it is given.
type guardedSettings struct{ settings }

func (g *guardedSettings) Set(ctx context.Context, key string, v int) error {
	if key == "admin" {
		return remoteable.ErrAccessDenied
	}
	return g.Map.Set(key, v)
}

// serve publishes obj as the root of a server and dials it.
func serve(t *testing.T, obj any) *broker.Ref {
	t.Helper()
	_, addr := brokertest.Serve(t, obj)
	conn := brokertest.Dial(t, addr)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	return conn.Root()
}

// TestEmbeddedModelIsNotWritableByPeers: a manager that embeds a
// *cache.Map does not let its peers Set (or Delete) through it; its own
// methods, and the model's mirror, work. A type that lists Set in its
// RemoteMethods exposes it; one that declares its own Set exposes that.
func TestEmbeddedModelIsNotWritableByPeers(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)

	s := &settings{Map: cache.NewMap[string, int]()}
	require.NoError(t, s.Set("admin", 0))
	root := serve(t, s)
	err := root.Call(ctx, "Set", nil, "admin", 1)
	require.ErrorIs(t, err, broker.ErrUnknownMethod)
	assert.Contains(t, err.Error(), "promoted from an embedded field")
	_, err = broker.Call[bool](ctx, root, "Delete", "admin")
	require.ErrorIs(t, err, broker.ErrUnknownMethod)
	v, _ := s.Get("admin")
	assert.Zero(t, v, "the peer wrote nothing")
	require.NoError(t, s.Set("admin", 2), "locally the manager uses its model as before")
	got, err := broker.Call[int](ctx, root, "Lookup", "admin")
	require.NoError(t, err)
	assert.Equal(t, 2, got)
	var mir *cache.Mirror[string, int]
	require.NoError(t, root.Call(ctx, "Model", &mir))
	defer mir.Close()
	m, _ := mir.Get("admin")
	assert.Equal(t, 2, m)
	d, err := root.Describe(ctx)
	require.NoError(t, err)
	_, described := d.Method("Set")
	assert.False(t, described)

	open := &openSettings{settings{Map: cache.NewMap[string, int]()}}
	require.NoError(t, serve(t, open).Call(ctx, "Set", nil, "admin", 1), "opted in")
	v, _ = open.Get("admin")
	assert.Equal(t, 1, v)

	guarded := &guardedSettings{settings{Map: cache.NewMap[string, int]()}}
	groot := serve(t, guarded)
	require.ErrorIs(t, groot.Call(ctx, "Set", nil, "admin", 1), remoteable.ErrAccessDenied, "the manager's own Set runs")
	require.NoError(t, groot.Call(ctx, "Set", nil, "theme", 3))
	v, _ = guarded.Get("theme")
	assert.Equal(t, 3, v)
}
