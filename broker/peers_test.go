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
