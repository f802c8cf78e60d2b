package remoteable

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/internal/typereg"
)

// peerCtx is the context of a call from a peer verified (by token) as
// name, forwarding for the given parties.
func peerCtx(name string, forwardedFor ...Identity) context.Context {
	return context.WithValue(context.Background(), typereg.PeerKey{},
		Peer{Name: name, VerifiedBy: VerifiedByToken, ForwardedFor: forwardedFor})
}

func unverifiedCtx(name string) context.Context {
	return context.WithValue(context.Background(), typereg.PeerKey{}, Peer{Name: name})
}

func TestAcceptOnlyFrom(t *testing.T) {
	p := AcceptOnlyFrom("agent", "logic")
	assert.NoError(t, p.Allow(peerCtx("agent"), "M"))
	assert.NoError(t, p.Allow(peerCtx("logic"), "M"))
	err := p.Allow(peerCtx("stranger"), "M")
	assert.ErrorIs(t, err, ErrAccessDenied)
	assert.NotErrorIs(t, err, ErrUnverified)
	assert.Contains(t, err.Error(), `"stranger"`)
	assert.ErrorIs(t, p.Allow(context.Background(), "M"), ErrAccessDenied, "no peer, no access")
}

// TestAcceptOnlyFromRefusesUnverifiedNames: a name nobody verified is only
// a claim, so it is refused with ErrUnverified (which is also
// ErrAccessDenied) and a message that says how to verify peers.
func TestAcceptOnlyFromRefusesUnverifiedNames(t *testing.T) {
	err := AcceptOnlyFrom("agent").Allow(unverifiedCtx("agent"), "M")
	assert.ErrorIs(t, err, ErrUnverified)
	assert.ErrorIs(t, err, ErrAccessDenied)
	assert.Contains(t, err.Error(), "not verified")
	assert.Contains(t, err.Error(), "WithAuthenticator")
}

// TestAcceptOnlyFromChecksWhomTheCallActsFor: a relay admitted on its own
// does not lend that to the callers it forwards for.
func TestAcceptOnlyFromChecksWhomTheCallActsFor(t *testing.T) {
	p := AcceptOnlyFrom("relay", "alice")
	alice := Identity{Name: "alice", VerifiedBy: VerifiedByTLS}
	assert.NoError(t, p.Allow(peerCtx("relay", alice), "Admin"))

	err := p.Allow(peerCtx("relay", Identity{Name: "mallory", VerifiedBy: VerifiedByToken}), "Admin")
	assert.ErrorIs(t, err, ErrAccessDenied)
	assert.Contains(t, err.Error(), `"mallory"`)
	assert.Contains(t, err.Error(), `forwards this call`)

	err = p.Allow(peerCtx("relay", Identity{Name: "alice"}), "Admin")
	assert.ErrorIs(t, err, ErrUnverified, "a forwarded name nobody verified is refused too")

	err = AcceptOnlyFrom("relay").Allow(peerCtx("relay", Identity{}), "Admin")
	assert.ErrorIs(t, err, ErrUnverified, "an anonymous caller behind a relay is refused")
	assert.Contains(t, err.Error(), "anonymous")
}

// TestTrustPeers: a trusted peer is admitted whomever it acts for, but
// its own name must still be verified.
func TestTrustPeers(t *testing.T) {
	p := TrustPeers("server")
	assert.NoError(t, p.Allow(peerCtx("server", Identity{Name: "anyone"}), "Notify"))
	assert.ErrorIs(t, p.Allow(peerCtx("relay", Identity{Name: "server", VerifiedBy: "tls"}), "Notify"), ErrAccessDenied)
	assert.ErrorIs(t, p.Allow(unverifiedCtx("server"), "Notify"), ErrUnverified)
	assert.ErrorIs(t, p.Allow(context.Background(), "Notify"), ErrAccessDenied)
}

func TestIdentityString(t *testing.T) {
	assert.Equal(t, `"agent" (verified by tls)`, Identity{Name: "agent", VerifiedBy: VerifiedByTLS}.String())
	assert.Equal(t, `"agent" (unverified)`, Identity{Name: "agent"}.String())
	p := Peer{Name: "relay", VerifiedBy: "token", ForwardedFor: []Identity{{Name: "alice"}}}
	assert.Equal(t, []Identity{{Name: "alice"}, {Name: "relay", VerifiedBy: "token"}}, p.Chain())
	assert.True(t, p.Verified())
}

func TestMethodPolicies(t *testing.T) {
	deny := PolicyFunc(func(ctx context.Context, m string) error { return ErrAccessDenied })
	p := MethodPolicies{"Admin": AcceptOnlyFrom("root"), "*": deny}
	assert.NoError(t, p.Allow(peerCtx("root"), "Admin"))
	assert.ErrorIs(t, p.Allow(peerCtx("user"), "Admin"), ErrAccessDenied)
	assert.ErrorIs(t, p.Allow(peerCtx("root"), "Other"), ErrAccessDenied, "the default applies")
	assert.NoError(t, MethodPolicies{}.Allow(peerCtx("x"), "Any"), "no entry, no default: allowed")
}

type thing struct{ A int }
type other struct{ B int }

func TestRegistrationsRefuseConflicts(t *testing.T) {
	RegisterCopyable[thing]("test.remoteable.thing")
	RegisterCopyable[thing]("test.remoteable.thing") // the same again is fine
	assert.Panics(t, func() { RegisterCopyable[other]("test.remoteable.thing") })
	assert.Panics(t, func() { RegisterCopyable[thing]("test.remoteable.thing2") })
	assert.Panics(t, func() { RegisterCopyable[*thing]("test.remoteable.ptr") })
	assert.Panics(t, func() { RegisterCopyable[error]("test.remoteable.iface") })

	errA := errors.New("a")
	RegisterError("test.remoteable.a", errA)
	assert.Panics(t, func() { RegisterError("test.remoteable.a", errors.New("another")) })
	assert.Panics(t, func() { RegisterError("", errA) })

	entry, _ := typereg.FindError(errors.Join(errors.New("outer"), errA))
	if assert.NotNil(t, entry) {
		assert.Equal(t, "test.remoteable.a", entry.Name)
	}
}

func TestPeerFromPlainContext(t *testing.T) {
	_, ok := PeerFrom(context.Background())
	assert.False(t, ok)
	p, ok := PeerFrom(peerCtx("agent"))
	assert.True(t, ok)
	assert.Equal(t, "agent", p.Name)
}
