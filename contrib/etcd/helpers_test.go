package etcd_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/contrib/etcd"
	"github.com/tether-go/tether/contrib/etcd/internal/etcdtest"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

const prefix = "/tether-test/fleet/"

// ttl is the lease of the tests' announcements: the lapse tests wait about
// this long for etcd to drop a server. The embedded etcd allows one second;
// two leave a loaded machine room to renew in time (every TTL/3).
const ttl = 2 * time.Second

// startEtcd starts an embedded etcd for the test, stopped when it ends.
func startEtcd(t *testing.T) *etcdtest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := etcdtest.Start(ctx, t.TempDir())
	require.NoError(t, err)
	t.Cleanup(e.Close)
	return e
}

// etcdClient returns a client of the etcd at addr, closed when the test
// ends.
func etcdClient(t *testing.T, addr string) *clientv3.Client {
	t.Helper()
	cli, err := etcdtest.Client(addr)
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// replica is what each server of a test fleet publishes as "fleet".
type replica struct {
	remoteable.Referenceable
	name  string
	bumps atomic.Int64
}

// RemoteMethods declares Who safe to repeat; Bump is not.
func (*replica) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Who": {Idempotent: true}}
}

// Who names the server.
func (r *replica) Who(ctx context.Context) (string, error) { return r.name, nil }

// Bump counts its executions: none may be repeated.
func (r *replica) Bump(ctx context.Context) (int64, error) { return r.bumps.Add(1), nil }

// member is one server of a test fleet and its announcement.
type member struct {
	rep  *replica
	srv  *broker.Server
	ep   remote.Endpoint
	ann  *etcd.Announcement
	stop func()
}

// serve starts server name on a loopback port, stopped (hard) when the
// test ends.
func serve(t *testing.T, name string) *member {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rep := &replica{name: name}
	reg := registry.New()
	require.NoError(t, reg.Register("fleet", rep))
	srv := broker.NewServer(reg, broker.WithName(name))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var once sync.Once
	stop := func() { once.Do(func() { srv.Close(); <-served }) }
	t.Cleanup(stop)
	return &member{rep: rep, srv: srv, stop: stop,
		ep: remote.Endpoint{Network: "tcp", Addr: ln.Addr().String(), ID: name}}
}

// announce announces m through cli, withdrawn when the test ends.
func (m *member) announce(t *testing.T, cli *clientv3.Client, opts ...etcd.Option) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := etcd.Announce(ctx, cli, prefix, m.ep, append([]etcd.Option{etcd.WithTTL(ttl)}, opts...)...)
	require.NoError(t, err)
	m.ann = a
	t.Cleanup(func() { a.Close() })
}

// proxiedClient returns an etcd client that reaches etcd through a proxy
// the test can black-hole, both closed when the test ends.
func proxiedClient(t *testing.T, addr string) (*clientv3.Client, *faultnet.Proxy) {
	t.Helper()
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return etcdClient(t, p.Addr()), p
}

// ids returns the endpoints' IDs.
func ids(eps []remote.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.ID
	}
	return out
}

// poolIs reports whether the pool follows exactly the servers named.
func poolIs(p *remote.Pool, names ...string) func() bool {
	return func() bool { return slices.Equal(ids(p.Endpoints()), names) }
}

// fleetOptions detect a dead server within 400 ms and back off between 20
// and 200 ms.
func fleetOptions() []remote.Option {
	return []remote.Option{
		remote.WithBroker(broker.WithDeadPeerTimeout(400 * time.Millisecond)),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithDialTimeout(500 * time.Millisecond),
	}
}

// gatherWho asks every server of the pool who it is, in the pool's order.
func gatherWho(ctx context.Context, p *remote.Pool) []string {
	eps, targets := p.Targets("fleet")
	out := make([]string, len(eps))
	for res := range remote.Gather[string](ctx, targets, "Who") {
		if res.Err != nil {
			out[res.Index] = fmt.Sprintf("error: %v", res.Err)
		} else {
			out[res.Index] = res.Value
		}
	}
	return out
}
