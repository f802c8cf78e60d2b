package broker_test

import (
	"context"
	"fmt"
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

// rack is what an agent publishes as its root: the server calls it back.
type rack struct {
	remoteable.Referenceable
	id   string
	link int
}

// Whoami says which agent, and which of its links, answered.
func (r *rack) Whoami(ctx context.Context) (string, error) {
	return fmt.Sprintf("%s/%d", r.id, r.link), nil
}

// TestServerFindsPeerByName connects agents that announce their ids: the
// server finds each by its id, the newest link of an agent that has two,
// the older one again once the newest ends, and nothing for an unknown or
// empty name.
func TestServerFindsPeerByName(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := brokertest.Serve(t, &rack{id: "region"})
	brokertest.Dial(t, addr, broker.WithName("rack-a"), broker.WithRoot(&rack{id: "rack-a", link: 1}))
	brokertest.Dial(t, addr, broker.WithName("rack-b"), broker.WithRoot(&rack{id: "rack-b", link: 1}))
	testkit.Eventually(t, "both links are served", func() bool { return len(srv.Conns()) == 2 })
	b2 := brokertest.Dial(t, addr, broker.WithName("rack-b"), broker.WithRoot(&rack{id: "rack-b", link: 2}))
	testkit.Eventually(t, "the third link is served", func() bool { return len(srv.Conns()) == 3 })

	ctx := testkit.Ctx(t, time.Minute)
	whoami := func(name string) string {
		c, ok := srv.ConnByName(name)
		require.True(t, ok, name)
		assert.False(t, c.Peer().Verified(), "an announced name is a claim")
		got, err := broker.Call[string](ctx, c.Root(), "Whoami")
		require.NoError(t, err)
		return got
	}
	assert.Equal(t, "rack-a/1", whoami("rack-a"))
	assert.Equal(t, "rack-b/2", whoami("rack-b"), "the newest link")

	b2.Close()
	<-b2.Done()
	testkit.Eventually(t, "the server lets the newest link go", func() bool { return len(srv.Conns()) == 2 })
	assert.Equal(t, "rack-b/1", whoami("rack-b"), "the older link, still live")

	_, ok := srv.ConnByName("rack-c")
	assert.False(t, ok)
	_, ok = srv.ConnByName("")
	assert.False(t, ok)
}

// guestsWelcome verifies the peers that present the right token, and lets
// the others in under the name they announce, unverified (as a server
// taking TLS client certificates when given does).
type guestsWelcome struct{ token string }

func (g guestsWelcome) Authenticate(_ context.Context, cr broker.Credentials) (remoteable.Identity, error) {
	if cr.Token == g.token {
		return remoteable.Identity{Name: cr.Name, VerifiedBy: "test"}, nil
	}
	return remoteable.Identity{Name: cr.Name}, nil
}

// TestAnUnverifiedClaimDoesNotHideAVerifiedPeer: a peer that only claims
// the name of a verified peer does not become the connection ConnByName
// finds for it, whenever it comes, and a verified link of that name takes
// over from an unverified one. (The newest link won, so anyone could
// announce an agent's id and make the server lose the agent.)
func TestAnUnverifiedClaimDoesNotHideAVerifiedPeer(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := brokertest.Serve(t, &rack{id: "region"}, broker.WithAuthenticator(guestsWelcome{token: "secret"}))
	ctx := testkit.Ctx(t, time.Minute)
	whoami := func(srv *broker.Server) string {
		c, ok := srv.ConnByName("rack-a")
		require.True(t, ok)
		got, err := broker.Call[string](ctx, c.Root(), "Whoami")
		require.NoError(t, err)
		return got
	}
	brokertest.Dial(t, addr, broker.WithName("rack-a"), broker.WithToken("secret"), broker.WithRoot(&rack{id: "rack-a", link: 1}))
	testkit.Eventually(t, "the agent is served", func() bool { return len(srv.Conns()) == 1 })
	brokertest.Dial(t, addr, broker.WithName("rack-a"), broker.WithRoot(&rack{id: "impostor", link: 2}))
	testkit.Eventually(t, "the impostor is served", func() bool { return len(srv.Conns()) == 2 })
	assert.Equal(t, "rack-a/1", whoami(srv), "the verified agent, not the newer claim")

	// A verified link replaces the claim too, and outlives it.
	srv2, addr2 := brokertest.Serve(t, &rack{id: "region"}, broker.WithAuthenticator(guestsWelcome{token: "secret"}))
	imp := brokertest.Dial(t, addr2, broker.WithName("rack-a"), broker.WithRoot(&rack{id: "impostor", link: 1}))
	testkit.Eventually(t, "the impostor is served", func() bool { return len(srv2.Conns()) == 1 })
	brokertest.Dial(t, addr2, broker.WithName("rack-a"), broker.WithToken("secret"), broker.WithRoot(&rack{id: "rack-a", link: 2}))
	testkit.Eventually(t, "the agent is served", func() bool { return len(srv2.Conns()) == 2 })
	assert.Equal(t, "rack-a/2", whoami(srv2))
	imp.Close()
	<-imp.Done()
	testkit.Eventually(t, "the impostor is gone", func() bool { return len(srv2.Conns()) == 1 })
	assert.Equal(t, "rack-a/2", whoami(srv2))
}
