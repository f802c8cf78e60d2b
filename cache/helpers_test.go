package cache_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Item is a Copyable value kept in the test models.
type Item struct {
	Name  string
	Count int
}

func init() { remoteable.RegisterCopyable[Item]("cache.test.Item") }

// store is the manager the tests publish: it owns a model and changes it
// on request.
type store struct {
	remoteable.Referenceable
	m *cache.Map[string, Item]
	v *cache.Value[int]
}

func newStore(opts ...cache.Option) *store {
	return &store{m: cache.NewMap[string, Item](opts...), v: cache.NewValue(0)}
}

func (*store) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Model": {Idempotent: true}, "Counter": {Idempotent: true}}
}

// Model returns the model: the caller gets a mirror.
func (s *store) Model(ctx context.Context) (*cache.Map[string, Item], error) { return s.m, nil }

// Counter returns the single-value model.
func (s *store) Counter(ctx context.Context) (*cache.Value[int], error) { return s.v, nil }

// Put changes the model from a call.
func (s *store) Put(ctx context.Context, name string, count int) error {
	return s.m.Set(name, Item{Name: name, Count: count})
}

// Remove deletes from the model.
func (s *store) Remove(ctx context.Context, name string) (bool, error) { return s.m.Delete(name), nil }

// Watch receives a caller's model as a mirror and reports what it holds.
func (s *store) Watch(ctx context.Context, mir *cache.Mirror[string, int]) (int, error) {
	defer mir.Close()
	v, _ := mir.Get("x")
	return v, nil
}

// server publishes a registry holding a store under "store".
type server struct {
	srv  *broker.Server
	addr string
	st   *store
	reg  *registry.Registry
	ln   net.Listener
	errc chan error
}

func startServer(t testing.TB, st *store, opts ...broker.Option) *server {
	return startServerAt(t, "127.0.0.1:0", st, opts...)
}

func startServerAt(t testing.TB, addr string, st *store, opts ...broker.Option) *server {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("store", st))
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &server{srv: broker.NewServer(reg, opts...), addr: ln.Addr().String(), st: st, reg: reg, ln: ln, errc: make(chan error, 1)}
	go func() { s.errc <- s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	s.srv.Close()
	<-s.errc
	s.errc <- nil
}

// startRelay publishes cl's registry, as a relay does.
func startRelay(t testing.TB, cl *remote.Client) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{srv: broker.NewServer(cl.Registry()), addr: ln.Addr().String(), ln: ln, errc: make(chan error, 1)}
	go func() { s.errc <- s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func proxyTo(t testing.TB, addr string) *faultnet.Proxy {
	t.Helper()
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// connect makes a client of addr with the tests' quick backoff and dead
// peer detection, and the extra options.
func connect(t testing.TB, addr string, extra ...remote.Option) *remote.Client {
	t.Helper()
	opts := append([]remote.Option{
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithBroker(broker.WithDeadPeerTimeout(500*time.Millisecond), broker.WithHandshakeTimeout(time.Second)),
	}, extra...)
	cl, err := remote.Connect(testkit.Ctx(t, 90*time.Second), "tcp", addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// IsMine reports whether the model it was given is the store's own.
func (s *store) IsMine(ctx context.Context, m *cache.Map[string, Item]) (bool, error) {
	return m == s.m, nil
}

// requireOutagesShown checks a mirror's StaleChanged values: every one of
// the cuts outages showed as stale and then live, in alternation, ending
// live. An extra stale-then-live pair is a real outage too: these tests
// detect dead links after 500 ms, and on a loaded machine under the race
// detector a link whose pings were late is sometimes declared dead
// (logged, not failed); a missing pair, two stale in a row or a mirror
// left stale are failures.
func requireOutagesShown(t *testing.T, stale []bool, cuts int, what string) {
	t.Helper()
	require.GreaterOrEqual(t, len(stale), 2*cuts, "%s: stale transitions %v", what, stale)
	require.Zero(t, len(stale)%2, "%s ends stale: %v", what, stale)
	for j, s := range stale {
		require.Equal(t, j%2 == 0, s, "%s: stale transitions %v", what, stale)
	}
	if extra := len(stale)/2 - cuts; extra > 0 {
		t.Logf("%s: %d outage(s) besides the %d cuts (late pings under load)", what, extra, cuts)
	}
}
