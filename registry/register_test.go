package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// accounts declares its methods on the pointer.
type accounts struct{ n int }

func (a *accounts) Count(ctx context.Context) (int, error) { return a.n, nil }
func (a *accounts) Total() int                             { return a.n } // not remote

// misdeclared lists a method it does not have.
type misdeclared struct{}

func (*misdeclared) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Cuont": {Idempotent: true}}
}
func (*misdeclared) Count(ctx context.Context) (int, error) { return 0, nil }

// ctxLast takes its context last.
type ctxLast struct{}

func (*ctxLast) Get(name string, ctx context.Context) (string, error) { return name, nil }

// helpers has exported methods, none of them callable remotely.
type helpers struct{}

func (*helpers) Total() int { return 0 }

// TestRegisterRefusesMistakes checks that a manager declared by mistake is
// refused by Register with an error matching broker.ErrNotCallable that
// names the manager, its type and method, and the fix, and that nothing is
// registered.
func TestRegisterRefusesMistakes(t *testing.T) {
	reg := registry.New()
	for _, tc := range []struct {
		manager any
		msg     string
	}{
		{accounts{}, `tether: registering "m": registry_test.accounts has no remotely callable method: its method Count is declared on *registry_test.accounts (pointer receiver); publish a pointer (&registry_test.accounts{...}) instead`},
		{&misdeclared{}, `tether: registering "m": (*registry_test.misdeclared).RemoteMethods lists Cuont, which *registry_test.misdeclared does not have: fix the name, or remove the entry`},
		{&ctxLast{}, `tether: registering "m": (*registry_test.ctxLast).Get takes a context.Context as parameter 2: move the context to the first parameter, or mark the method Local in RemoteMethods`},
		{&helpers{}, `tether: registering "m": *registry_test.helpers has no remotely callable method (Total: its result is int, not error; a remote method returns error or (R, error)): give it an exported method of the form func (ctx context.Context, args...) (R, error) or func (ctx context.Context, args...) error`},
	} {
		err := reg.Register("m", tc.manager)
		require.ErrorIs(t, err, broker.ErrNotCallable, "%T", tc.manager)
		assert.EqualError(t, err, tc.msg)
	}
	assert.Empty(t, reg.Names(), "nothing was registered")
	require.NoError(t, reg.Register("m", &accounts{}))
}

// TestRegisterRefusesANilPointer: registering a pointer that was never
// set (var svc *accounts; reg.Register("m", svc)) is a mistake found at
// registration, matching broker.ErrNotCallable and saying what to publish;
// it used to be accepted and then every call panicked on the nil receiver.
func TestRegisterRefusesANilPointer(t *testing.T) {
	reg := registry.New()
	var svc *accounts
	err := reg.Register("m", svc)
	require.ErrorIs(t, err, broker.ErrNotCallable)
	assert.EqualError(t, err, `tether: registering "m": a nil *registry_test.accounts has nothing to call: publish a value (&registry_test.accounts{...})`)
	assert.Empty(t, reg.Names())
}

// TestRegistriesAndRelaysRegister checks that registries publish fine: a
// registry inside another, a relay's view of an upstream registry
// (remote.Registry) and an upstream manager (remote.Ref), registered and
// served by a relay whose callers reach the upstream manager.
func TestRegistriesAndRelaysRegister(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	up := registry.New()
	require.NoError(t, up.Register("accounts", &accounts{n: 7}))
	upAddr := serve(t, up)

	cl, err := remote.Connect(ctx, "tcp", upAddr)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	upAccounts, err := cl.Registry().Lookup(ctx, "accounts")
	require.NoError(t, err)

	relay := registry.New()
	require.NoError(t, relay.Register("upstream", cl.Registry()))
	require.NoError(t, relay.Register("accounts", upAccounts))
	require.NoError(t, relay.Register("local", registry.New()))
	relayAddr := serve(t, relay)
	plainRelayAddr := serve(t, cl.Registry())

	conn, err := broker.Dial(ctx, "tcp", relayAddr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	a, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "accounts")
	require.NoError(t, err)
	n, err := broker.Call[int](ctx, a, "Count")
	require.NoError(t, err)
	assert.Equal(t, 7, n)
	d, err := a.Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, []broker.SkippedMethod{{Name: "Total", Reason: "its result is int, not error; a remote method returns error or (R, error)"}},
		d.Skipped, "the upstream manager's skipped methods, through the relay")
	u, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "upstream")
	require.NoError(t, err)
	a, err = broker.Call[*broker.Ref](ctx, u, "Lookup", "accounts")
	require.NoError(t, err)
	n, err = broker.Call[int](ctx, a, "Count")
	require.NoError(t, err)
	assert.Equal(t, 7, n)

	conn2, err := broker.Dial(ctx, "tcp", plainRelayAddr)
	require.NoError(t, err)
	t.Cleanup(func() { conn2.Close(); <-conn2.Done() })
	a, err = broker.Call[*broker.Ref](ctx, conn2.Root(), "Lookup", "accounts")
	require.NoError(t, err)
	n, err = broker.Call[int](ctx, a, "Count")
	require.NoError(t, err)
	assert.Equal(t, 7, n)
}

// serve publishes root on a loopback port until the end of the test.
func serve(t *testing.T, root any) string {
	t.Helper()
	_, addr := brokertest.Serve(t, root)
	return addr
}
