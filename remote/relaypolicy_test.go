package remote

// Regression tests for the defects an adversarial review of the security
// work found: each comment says what went wrong before the fix.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// adminOps is what a realm gives privileged peers only: unguarded, since
// "a guest's root can simply have no admin methods, so there is nothing to
// guard" (docs/security.md, Per-identity roots).
type adminOps struct{ remoteable.Referenceable }

func (*adminOps) Shutdown(ctx context.Context) (string, error) {
	p, _ := remoteable.PeerFrom(ctx)
	return "shut down for " + p.Name + " acting for " + (func() string {
		if len(p.ForwardedFor) == 0 {
			return "nobody"
		}
		return p.ForwardedFor[0].String()
	})(), nil
}

// TestReviewRealmIsLentByRelay: claim 2 says a relay does not lend its
// identity. With WithRealm, upstream gives the verified "relay" a root with
// admin operations; an anonymous peer of the relay reaches them through the
// relay, although the same anonymous peer connecting directly gets the
// guest root. The realm decides per connection and never looks at
// ForwardedFor, so the "strongest access control" is lent to every peer of
// every relay.
func TestReviewRealmIsLentByRelay(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	realm := func(ctx context.Context, p remoteable.Peer) (any, error) {
		reg := registry.New()
		if p.Verified() && p.Name == "relay" {
			if err := reg.Register("admin", &adminOps{}); err != nil {
				return nil, err
			}
		}
		return reg, nil
	}
	s := startServer(t, "127.0.0.1:0", nil, broker.WithRealm(realm),
		broker.WithAuthenticator(broker.AuthenticatorFunc(func(ctx context.Context, cr broker.Credentials) (remoteable.Identity, error) {
			if cr.Name == "relay" && cr.Token == "r" {
				return remoteable.Identity{Name: "relay", VerifiedBy: "token"}, nil
			}
			return remoteable.Identity{Name: cr.Name}, nil // others are guests
		})))

	direct := connect(t, s.addr)
	_, err := direct.Registry().Lookup(ctx, "admin")
	require.ErrorIs(t, err, registry.ErrNotFound, "a guest has no admin root")

	anonymous := connect(t, startRelay(t, s.addr, nil))
	ref, err := anonymous.Registry().Lookup(ctx, "admin")
	if err == nil {
		var out string
		err = ref.Call(ctx, "Shutdown", &out)
		if err == nil {
			t.Fatalf("an anonymous peer of the relay ran an admin operation through the relay: %q", out)
		}
	}
	require.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Contains(t, err.Error(), "WithRealm")
}

// guardedRegistry guards Lookup per caller: "secret" only for alice (and
// the relay that carries her calls). It declares its methods, since the
// registry's are promoted.
type guardedRegistry struct {
	remoteable.Referenceable
	*registry.Registry
}

func (*guardedRegistry) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Lookup": {Idempotent: true, ByReference: true}, "List": {Idempotent: true}}
}

func (*guardedRegistry) RemotePolicy() remoteable.Policy {
	return remoteable.PolicyFunc(func(ctx context.Context, method string) error {
		p, _ := remoteable.PeerFrom(ctx)
		for _, id := range p.Chain() {
			if id.Name == "bob" {
				return remoteable.ErrAccessDenied
			}
		}
		return nil
	})
}

// TestReviewRelayRegistryCacheSkipsUpstreamPolicy: remote.Registry.Lookup
// returns the wrapper it cached for a name without asking upstream when the
// wrapper is current, so a second caller of the relay gets what the first
// caller's Lookup obtained, and upstream's policy never sees the second
// caller's Lookup.
func TestReviewRelayRegistryCacheSkipsUpstreamPolicy(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	reg := &guardedRegistry{Registry: publish(t, newUsers("secret"))}
	s := startServer(t, "127.0.0.1:0", reg, broker.WithAuthenticator(broker.Tokens(map[string]string{"relay": "r"})))

	relay := startRelay(t, s.addr, map[string]string{"alice": "a", "bob": "b"})
	bobDirect := connect(t, relay, WithBroker(broker.WithName("bob"), broker.WithToken("b")))
	_, err := bobDirect.Registry().Lookup(ctx, "users")
	require.ErrorIs(t, err, remoteable.ErrAccessDenied, "bob may not look users up (first)")

	alice := connect(t, relay, WithBroker(broker.WithName("alice"), broker.WithToken("a")))
	ref, err := alice.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	_, err = broker.Call[string](ctx, ref, "Get", "x")
	require.NoError(t, err)

	bob := connect(t, relay, WithBroker(broker.WithName("bob"), broker.WithToken("b")))
	bref, err := bob.Registry().Lookup(ctx, "users")
	if err == nil {
		got, err := broker.Call[string](ctx, bref, "Get", "x")
		t.Fatalf("bob looked up users through the relay once alice had (Get: %q, %v)", got, err)
	}
	assert.True(t, errors.Is(err, remoteable.ErrAccessDenied), "%v", err)
}
