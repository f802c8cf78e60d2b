package remoteable

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/internal/typereg"
)

func peerCtx(name string) context.Context {
	return context.WithValue(context.Background(), typereg.PeerKey{}, Peer{Name: name})
}

func TestAcceptOnlyFrom(t *testing.T) {
	p := AcceptOnlyFrom("agent", "logic")
	assert.NoError(t, p.Allow(peerCtx("agent"), "M"))
	assert.NoError(t, p.Allow(peerCtx("logic"), "M"))
	err := p.Allow(peerCtx("stranger"), "M")
	assert.ErrorIs(t, err, ErrAccessDenied)
	assert.Contains(t, err.Error(), `"stranger"`)
	assert.ErrorIs(t, p.Allow(context.Background(), "M"), ErrAccessDenied, "no peer, no access")
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

	_, entry := typereg.FindError(errors.Join(errors.New("outer"), errA))
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
