package broker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestReview2TokensWithEmptyTokenInsideAnotherAuthenticator: Tokens
// refused a table with an empty token only where WithAuthenticator saw the
// *tokenTable itself. Composed into an authenticator of one's own (a chain:
// per-peer tokens, else certificates; a wrapper that logs), the table's
// error was never looked at, and Authenticate verified a peer that
// announced the name and sent no token (an unset environment variable).
// Such a table now refuses every peer, saying why.
func TestReview2TokensWithEmptyTokenInsideAnotherAuthenticator(t *testing.T) {
	leakcheck.Check(t)
	tokens := Tokens(map[string]string{"admin": "" /* os.Getenv("ADMIN_TOKEN"), unset */})
	logged := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		return tokens.Authenticate(ctx, cr)
	})
	svc := newService()
	_, addr := startServer(t, svc, WithAuthenticator(logged))
	c, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithName("admin"))
	if err == nil {
		defer c.Close()
		var who string
		require.NoError(t, c.Root().Call(testkit.Ctx(t, 30*time.Second), "Whoami", &who))
		svc.mu.Lock()
		p := svc.lastPeer
		svc.mu.Unlock()
		t.Errorf("DEFECT: a peer without a token was admitted as %q verified by %q (the table's error is only checked by WithAuthenticator)", who, p.VerifiedBy)
		return
	}
	require.ErrorIs(t, err, ErrAuthFailed)
	require.ErrorContains(t, err, `the token for "admin" is empty`)
}
