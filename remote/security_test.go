package remote

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
	"github.com/tether-go/tether/remoteable"
)

// vault guards Open for the names it is given and records who called.
type vault struct {
	remoteable.Referenceable
	allowed []string
	seen    chan remoteable.Peer
}

func (v *vault) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{"Open": remoteable.AcceptOnlyFrom(v.allowed...)}
}

func (v *vault) Open(ctx context.Context) (string, error) {
	p, _ := remoteable.PeerFrom(ctx)
	v.seen <- p
	return "opened", nil
}

// startRelay publishes the registry of the server at upstream, reached as
// "relay" with token "r", verifying its own peers with tokens (nil: none).
func startRelay(t *testing.T, upstream string, tokens map[string]string) string {
	up := connect(t, upstream, WithBroker(broker.WithName("relay"), broker.WithToken("r")))
	var opts []broker.Option
	if tokens != nil {
		opts = append(opts, broker.WithAuthenticator(broker.Tokens(tokens)))
	}
	_, addr := brokertest.Serve(t, up.Registry(), opts...)
	return addr
}

// TestRelayIsNoConfusedDeputy is the scenario: upstream guards
// Open with AcceptOnlyFrom("relay"); a peer of the relay, verified or not,
// cannot call it through the relay unless the upstream admits it too.
func TestRelayIsNoConfusedDeputy(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	v := &vault{allowed: []string{"relay"}, seen: make(chan remoteable.Peer, 4)}
	s := startServer(t, "127.0.0.1:0", publish(t, v), broker.WithAuthenticator(broker.Tokens(map[string]string{"relay": "r"})))

	anonymous := connect(t, startRelay(t, s.addr, nil))
	ref, err := anonymous.Registry().Lookup(ctx, "users")
	require.NoError(t, err, "the registry itself is open")
	_, err = broker.Call[string](ctx, ref, "Open")
	require.ErrorIs(t, err, remoteable.ErrUnverified)
	assert.Contains(t, err.Error(), "anonymous peer")

	relayAddr := startRelay(t, s.addr, map[string]string{"alice": "a"})
	alice := connect(t, relayAddr, WithBroker(broker.WithName("alice"), broker.WithToken("a")))
	ref, err = alice.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	_, err = broker.Call[string](ctx, ref, "Open")
	require.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Contains(t, err.Error(), `"alice" (verified by token) may not call Open`)
	assert.Len(t, v.seen, 0)

	v.allowed = append(v.allowed, "alice") // read per call: the policy admits alice now
	got, err := broker.Call[string](ctx, ref, "Open")
	require.NoError(t, err)
	assert.Equal(t, "opened", got)
	p := <-v.seen
	assert.Equal(t, remoteable.Identity{Name: "relay", VerifiedBy: "token"}, p.Identity())
	assert.Equal(t, []remoteable.Identity{{Name: "alice", VerifiedBy: "token"}}, p.ForwardedFor)
}
