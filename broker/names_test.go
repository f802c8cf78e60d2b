package broker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// miniRegistry hands out probes by name, as a registry does, and by
// another method, as any object may.
type miniRegistry struct{ users, other *mdProbe }

// RemoteMethods sends both results by reference.
func (r *miniRegistry) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Lookup": {ByReference: true}, "Other": {ByReference: true}}
}

// Lookup hands out the users probe under any name.
func (r *miniRegistry) Lookup(ctx context.Context, name string) (any, error) { return r.users, nil }

// Other hands out the other probe, by no name.
func (r *miniRegistry) Other(ctx context.Context) (any, error) { return r.other, nil }

// targets records the Target of every call an interceptor sees, by side
// and method.
type targets struct {
	mu   sync.Mutex
	seen map[string]Target
}

// record is an interceptor that records the call's target.
func (s *targets) record(ctx context.Context, call *CallInfo, next Invoker) error {
	side := "server "
	if call.Client {
		side = "client "
	}
	s.mu.Lock()
	s.seen[side+call.Method] = call.Target
	s.mu.Unlock()
	return next(ctx, call)
}

// get returns what was recorded for side and method.
func (s *targets) get(key string) Target {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[key]
}

func TestTargetNameIsTheNameARegistryHandedTheObjectOutUnder(t *testing.T) {
	leakcheck.Check(t)
	rec := &targets{seen: map[string]Target{}}
	_, addr := startServer(t, &miniRegistry{users: &mdProbe{}, other: &mdProbe{}}, WithServerInterceptors(rec.record))
	c := dial(t, addr, WithClientInterceptors(rec.record))
	ctx := testkit.Ctx(t, 10*time.Second)

	users, err := Call[*Ref](ctx, c.Root(), "Lookup", "users")
	require.NoError(t, err)
	assert.Equal(t, Target{ID: 0}, rec.get("client Lookup"), "the root was not looked up")
	assert.Equal(t, Target{ID: 0, Type: "*broker.miniRegistry"}, rec.get("server Lookup"))

	require.NoError(t, users.Call(ctx, "Quiet", nil))
	assert.Equal(t, "users", rec.get("client Quiet").Name, "the caller's Ref remembers the name it was looked up by")
	assert.Equal(t, "users", rec.get("server Quiet").Name, "the handler's export remembers the name it was handed out under")
	assert.Equal(t, "*broker.mdProbe", rec.get("server Quiet").Type)

	require.ErrorIs(t, users.Call(ctx, "Nope", nil), ErrUnknownMethod)
	assert.Equal(t, "users", rec.get("server Nope").Name, "a refused call names its target too")

	other, err := Call[*Ref](ctx, c.Root(), "Other")
	require.NoError(t, err)
	require.Equal(t, NotFound, CodeOf(other.Call(ctx, "Missing", nil)), "Missing fails with its own code")
	assert.Equal(t, "", rec.get("client Missing").Name, "an object no Lookup handed out has no name")
	assert.Equal(t, "", rec.get("server Missing").Name)
	assert.Equal(t, "*broker.mdProbe", rec.get("server Missing").Type)
}

func TestTargetNameThroughAProxy(t *testing.T) {
	leakcheck.Check(t)
	upRec, relayRec := &targets{seen: map[string]Target{}}, &targets{seen: map[string]Target{}}
	_, upAddr := startServer(t, &miniRegistry{users: &mdProbe{}, other: &mdProbe{}}, WithServerInterceptors(upRec.record))
	up := dial(t, upAddr, WithClientInterceptors(relayRec.record))
	// The relay publishes its reference to the upstream registry: every
	// call on it, Lookup included, is passed on (forward).
	_, relayAddr := startServer(t, up.Root(), WithServerInterceptors(relayRec.record))
	c := dial(t, relayAddr)
	ctx := testkit.Ctx(t, 10*time.Second)

	var users any
	require.NoError(t, c.Root().Call(ctx, "Lookup", &users, "users"))
	require.IsType(t, &Ref{}, users)
	require.NoError(t, users.(*Ref).Call(ctx, "Quiet", nil))
	assert.Equal(t, "users", users.(*Ref).name, "a reference decoded into an any is named too")
	assert.Equal(t, "users", relayRec.get("server Quiet").Name, "the relay's export of a forwarded Lookup's result")
	assert.Equal(t, "users", relayRec.get("client Quiet").Name, "the relay's own handle upstream")
	assert.Equal(t, "users", upRec.get("server Quiet").Name)
}
