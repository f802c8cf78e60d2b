package mistakes

import (
	"context"
	"net"
	"strings"
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

// TestOptionsOnTheWrongSide checks guide §2: WithAuthenticator and
// WithRealm on a dialer, a root given with WithRealm, and a server given
// both WithToken and WithAuthenticator are broker.ErrInvalidOption naming
// the option; Serve refuses at once and closes its listener; NewServer(nil)
// without a realm is ErrNotCallable.
func TestOptionsOnTheWrongSide(t *testing.T) {
	leakcheck.Check(t)
	addr, _, _ := serveDesk(t)
	realm := broker.WithRealm(func(ctx context.Context, p remoteable.Peer) (any, error) { return registry.New(), nil })
	auth := broker.WithAuthenticator(broker.Tokens(map[string]string{"bob": "b0b"}))

	for name, opt := range map[string]broker.Option{"WithAuthenticator": auth, "WithRealm": realm} {
		_, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", addr, opt)
		assert.ErrorIs(t, err, broker.ErrInvalidOption, name)
		assert.Equal(t, broker.InvalidArgument, broker.CodeOf(err))
		if err != nil {
			assert.Contains(t, err.Error(), name)
			assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
			assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
		}
	}

	serve := func(root any, opts ...broker.Option) error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		err = broker.NewServer(root, opts...).Serve(ln)
		_, dialErr := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		assert.Error(t, dialErr, "Serve left its listener open")
		return err
	}
	err := serve(registry.New(), realm)
	assert.ErrorIs(t, err, broker.ErrInvalidOption, "a root given with WithRealm: %v", err)
	if err != nil {
		assert.Contains(t, err.Error(), "WithRealm")
	}
	err = serve(registry.New(), broker.WithToken("t"), auth)
	assert.ErrorIs(t, err, broker.ErrInvalidOption, "WithToken and WithAuthenticator: %v", err)
	err = serve(nil)
	assert.ErrorIs(t, err, broker.ErrNotCallable, "NewServer(nil): %v", err)
	assert.NoError(t, func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := broker.NewServer(nil, realm)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		c, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", ln.Addr().String())
		if err == nil {
			c.Close()
			<-c.Done()
		}
		srv.Close()
		<-done
		return err
	}(), "NewServer(nil, WithRealm(...)) is how the guide says to use a realm")
}
