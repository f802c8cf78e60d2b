package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

type users struct{}

func (*users) Count(ctx context.Context) (int, error) { return 3, nil }

func TestLocal(t *testing.T) {
	reg := registry.New()
	u := &users{}
	require.NoError(t, reg.Register("users", u))
	require.NoError(t, reg.Register("admins", &users{}))
	assert.ErrorIs(t, reg.Register("users", &users{}), registry.ErrExists)
	assert.EqualError(t, reg.Register("", u), "tether: registering a manager under an empty name: give it a name")
	err := reg.Register("nil", nil)
	assert.ErrorIs(t, err, broker.ErrNotCallable)
	assert.EqualError(t, err, `tether: registering "nil": a nil value has no remotely callable method: publish a value with exported methods`)
	err = reg.Register("map", map[string]int{})
	assert.ErrorIs(t, err, broker.ErrNotCallable)
	assert.EqualError(t, err, `tether: registering "map": map[string]int cannot be handed out by reference: register a pointer`)

	got, err := reg.Lookup(context.Background(), "users")
	require.NoError(t, err)
	assert.Same(t, u, got)
	_, err = reg.Lookup(context.Background(), "nobody")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	assert.Equal(t, []string{"admins", "users"}, reg.Names())

	require.NoError(t, reg.Unregister("admins"))
	assert.ErrorIs(t, reg.Unregister("admins"), registry.ErrNotFound)
	assert.Equal(t, []string{"users"}, reg.Names())
}

func TestRemote(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("users", &users{}))
	_, addr := brokertest.Serve(t, reg)
	conn := brokertest.Dial(t, addr)
	ctx := testkit.Ctx(t, 10*time.Second)

	// Lookup hands out the manager by reference although it does not embed
	// Referenceable.
	u, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "users")
	require.NoError(t, err)
	n, err := broker.Call[int](ctx, u, "Count")
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	_, err = broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "nobody")
	assert.ErrorIs(t, err, registry.ErrNotFound, "the sentinel survives the wire")

	names, err := broker.Call[[]string](ctx, conn.Root(), "List")
	require.NoError(t, err)
	assert.Equal(t, []string{"users"}, names)

	// A peer cannot change what the process publishes.
	err = conn.Root().Call(ctx, "Register", nil, "evil", "x")
	assert.ErrorIs(t, err, broker.ErrUnknownMethod)
	err = conn.Root().Call(ctx, "Unregister", nil, "users")
	assert.ErrorIs(t, err, broker.ErrUnknownMethod)
	assert.Equal(t, []string{"users"}, reg.Names())
}
