package uitest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// User is the demo's Copyable.
type User struct {
	Name  string `cbor:"name" json:"name"`
	Email string `cbor:"email" json:"email"`
	Admin bool   `cbor:"admin" json:"admin"`
}

// errNoUser is what Users.Get returns for a name it does not know.
var errNoUser = errors.New("no such user")

func init() {
	remoteable.RegisterCopyable[User]("uitest.User")
	remoteable.RegisterError("uitest.no-such-user", errNoUser)
}

// users is the demo's manager: a method that returns a value, one that
// returns a reference and one that returns a model.
type users struct {
	remoteable.Referenceable
	model *cache.Map[string, User]
}

// RemoteMethods lets the gateway follow the model through an outage.
func (*users) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}, "Model": {Idempotent: true}}
}

// Get returns the user called name.
func (u *users) Get(ctx context.Context, name string) (User, error) {
	usr, ok := u.model.Get(name)
	if !ok {
		return User{}, fmt.Errorf("user %q: %w", name, errNoUser)
	}
	return usr, nil
}

// Login opens a session: the caller gets a reference.
func (u *users) Login(ctx context.Context, name string) (*session, error) {
	if _, ok := u.model.Get(name); !ok {
		return nil, fmt.Errorf("user %q: %w", name, errNoUser)
	}
	return &session{user: name}, nil
}

// Model returns the users as a model.
func (u *users) Model(ctx context.Context) (*cache.Map[string, User], error) { return u.model, nil }

// session is handed out by reference.
type session struct {
	remoteable.Referenceable
	user string
}

// Whoami returns the session's user.
func (s *session) Whoami(ctx context.Context) (string, error) { return s.user, nil }

// demo is the demo server behind a fault-injecting proxy, a gateway with
// the inspector in front of it, and the gateway's address.
type demo struct {
	users *users
	proxy *faultnet.Proxy
	url   string // the inspector's page
}

// startDemo starts the server, the proxy, the gateway's client, the
// gateway (with the inspector, and opts) and its HTTP server, all on
// loopback, stopped when t ends.
func startDemo(t *testing.T, opts ...gateway.Option) *demo {
	t.Helper()
	d := &demo{users: &users{model: cache.NewMap[string, User]()}}
	require.NoError(t, d.users.model.Set("alice", User{Name: "alice", Email: "alice@example.com", Admin: true}))
	require.NoError(t, d.users.model.Set("bob", User{Name: "bob", Email: "bob@example.com"}))
	reg := registry.New()
	require.NoError(t, reg.Register("users", d.users))
	srv := broker.NewServer(reg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-served })

	d.proxy, err = faultnet.New(ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.proxy.Close() })
	d.url = serveGateway(t, d.proxy.Addr(), opts...)
	return d
}

// serveGateway serves a gateway with the inspector (and opts), calling
// addr, on a loopback port, and returns the inspector's URL.
func serveGateway(t *testing.T, addr string, opts ...gateway.Option) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := remote.Connect(ctx, "tcp", addr,
		remote.WithBackoff(remote.Backoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithBroker(broker.WithDeadPeerTimeout(time.Second), broker.WithHandshakeTimeout(2*time.Second)))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	gw, err := gateway.New(cl, append([]gateway.Option{gateway.WithInspector(), gateway.WithTimeout(5 * time.Second)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { gw.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		// Close, not Shutdown: the page's event streams never end by
		// themselves.
		hs.Close()
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return "http://" + ln.Addr().String() + gateway.InspectorPath
}
