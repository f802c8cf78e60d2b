package remote_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// replica is the manager each server of a test fleet publishes as
// "fleet": it says which server it is, and owns a model that differs from
// server to server.
type replica struct {
	remoteable.Referenceable
	name  string
	model *cache.Map[string, int]
	bumps atomic.Int64
}

func (*replica) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Who": {Idempotent: true}, "Model": {Idempotent: true}}
}

// Who names the server.
func (r *replica) Who(ctx context.Context) (string, error) { return r.name, nil }

// Model returns the server's model: the caller gets a mirror.
func (r *replica) Model(ctx context.Context) (*cache.Map[string, int], error) { return r.model, nil }

// Bump is not idempotent: every execution counts.
func (r *replica) Bump(ctx context.Context) (int64, error) { return r.bumps.Add(1), nil }

// fleetServer is one server of a test fleet, reached through a proxy that
// can black-hole it.
type fleetServer struct {
	rep   *replica
	proxy *faultnet.Proxy
	ep    remote.Endpoint
}

// startFleet starts n servers, each behind its own proxy; endpoint i has
// the ID "s<i>".
func startFleet(t *testing.T, n int) []*fleetServer {
	t.Helper()
	fleet := make([]*fleetServer, n)
	for i := range fleet {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		rep, _ := serveReplica(t, ln, i)
		p, err := faultnet.New(ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		fleet[i] = &fleetServer{rep: rep, proxy: p, ep: remote.Endpoint{Network: "tcp", Addr: p.Addr(), ID: rep.name}}
	}
	return fleet
}

// serveReplica serves replica "s<i>" on ln until the returned stop is
// called, or the test ends.
func serveReplica(t *testing.T, ln net.Listener, i int) (*replica, func()) {
	t.Helper()
	rep := &replica{name: fmt.Sprintf("s%d", i), model: cache.NewMap[string, int]()}
	require.NoError(t, rep.model.Set("server", i))
	require.NoError(t, rep.model.Set(rep.name, 100+i))
	reg := registry.New()
	require.NoError(t, reg.Register("fleet", rep))
	srv := broker.NewServer(reg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var once sync.Once
	stop := func() { once.Do(func() { srv.Close(); <-served }) }
	t.Cleanup(stop)
	return rep, stop
}

// endpoints returns the fleet's endpoints.
func endpoints(fleet []*fleetServer) []remote.Endpoint {
	eps := make([]remote.Endpoint, len(fleet))
	for i, s := range fleet {
		eps[i] = s.ep
	}
	return eps
}

// fleetOptions detect a dead server within 1.5 s and back off between
// 20 and 200 ms. (With 400 ms, links to healthy servers that were merely
// starved of CPU on a loaded machine under -race ended too, and
// TestConnectAnyFailsOver counted 4 links instead of 2.)
func fleetOptions() []remote.Option {
	return []remote.Option{
		remote.WithBroker(broker.WithDeadPeerTimeout(1500 * time.Millisecond)),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithDialTimeout(500 * time.Millisecond),
	}
}

// sameModel reports whether a mirror holds exactly what a model holds.
func sameModel(m *cache.Map[string, int], mir *cache.Mirror[string, int]) bool {
	want, _ := m.Snapshot()
	got, _ := mir.Snapshot()
	return fmt.Sprint(want) == fmt.Sprint(got) && mir.Epoch() == m.Epoch() && !mir.Stale()
}

// TestConnectAnyFailsOver black-holes the server a ConnectAny client uses
// while it makes calls and holds a mirror: the client moves to another
// server without trying the lost one first, its old *remote.Ref works
// there, its mirror becomes a copy of the new server's model, the signals
// fire once per transition and no call fails.
func TestConnectAnyFailsOver(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 3)
	ctx := testkit.Ctx(t, time.Minute)
	// The resolver names the fleet once the signals are watched, so that
	// the first link is counted.
	r := remote.Static()
	cl, err := remote.ConnectAny(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	var connected, disconnected atomic.Int32
	cl.Connected.Connect(func(*broker.Conn) { connected.Add(1) })
	cl.Disconnected.Connect(func(error) { disconnected.Add(1) })
	r.Update(endpoints(fleet)...)
	require.NoError(t, cl.WaitConnected(ctx))

	ref, err := cl.Registry().Lookup(ctx, "fleet")
	require.NoError(t, err)
	first, ok := cl.Endpoint()
	require.True(t, ok)
	who, err := broker.Call[string](ctx, ref, "Who")
	require.NoError(t, err)
	require.Equal(t, first.ID, who)
	var old *fleetServer
	for _, s := range fleet {
		if s.ep.ID == first.ID {
			old = s
		}
	}
	var mir *cache.Mirror[string, int]
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	testkit.Eventually(t, "the mirror follows the first server's model", func() bool { return sameModel(old.rep.model, mir) })

	// A caller keeps calling through the failover; its calls wait for the
	// link rather than fail fast.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, failed atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			cctx, cancel := context.WithTimeout(remote.WaitForLink(ctx), 20*time.Second)
			_, err := broker.Call[string](cctx, ref, "Who")
			cancel()
			calls.Add(1)
			if err != nil {
				failed.Add(1)
				t.Errorf("call during the failover: %v", err)
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	before, failures := old.proxy.Accepted(), cl.Stats().DialFailures
	lost := time.Now()
	old.proxy.Blackhole(true)
	var now remote.Endpoint
	testkit.Eventually(t, "the client is on another server", func() bool {
		now, ok = cl.Endpoint()
		return ok && now.ID != first.ID
	})
	t.Logf("on %s %v after the black hole on %s (dead-peer timeout 1.5s, backoff cap 200ms)", now.ID, time.Since(lost).Round(time.Millisecond), first.ID)
	assert.Equal(t, before, old.proxy.Accepted(), "the lost server is tried last")
	// No dial failed, so no backoff was waited out: the client was on the
	// new server once the dead-peer timeout found the old one dead.
	assert.Equal(t, failures, cl.Stats().DialFailures)

	who, err = broker.Call[string](ctx, ref, "Who")
	require.NoError(t, err, "the old *remote.Ref works on the new server")
	assert.Equal(t, now.ID, who)
	var next *fleetServer
	for _, s := range fleet {
		if s.ep.ID == now.ID {
			next = s
		}
	}
	testkit.Eventually(t, "the mirror becomes a copy of the new server's model", func() bool { return sameModel(next.rep.model, mir) })
	require.NoError(t, next.rep.model.Set("after", 1))
	testkit.Eventually(t, "the mirror follows the new model", func() bool { return sameModel(next.rep.model, mir) })

	testkit.Eventually(t, "the signals ran", func() bool { return connected.Load() >= 2 && disconnected.Load() >= 1 })
	assert.Equal(t, int32(2), connected.Load(), "Connected: once per link")
	assert.Equal(t, int32(1), disconnected.Load(), "Disconnected: once per link lost")
	assert.Positive(t, calls.Load())
	assert.Zero(t, failed.Load())
	old.proxy.Restore()
}

// TestConnectAnyRepeatsNoCall makes a call that is not idempotent on a
// server that then dies while it runs: the call fails with
// broker.ErrConnectionLost and is not repeated on the next server.
func TestConnectAnyRepeatsNoCall(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 2)
	ctx := testkit.Ctx(t, time.Minute)
	cl, err := remote.ConnectAny(ctx, remote.Static(endpoints(fleet)...), fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	ref, err := cl.Registry().Lookup(ctx, "fleet")
	require.NoError(t, err)
	first, _ := cl.Endpoint()
	var old *fleetServer
	for _, s := range fleet {
		if s.ep.ID == first.ID {
			old = s
		}
	}
	old.proxy.Blackhole(true)
	_, err = broker.Call[int64](ctx, ref, "Bump")
	require.ErrorIs(t, err, broker.ErrConnectionLost)
	testkit.Eventually(t, "the client is on the other server", func() bool {
		now, ok := cl.Endpoint()
		return ok && now.ID != first.ID
	})
	n, err := broker.Call[int64](ctx, ref, "Bump")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the lost call was not repeated on the new server")
	for _, s := range fleet {
		assert.LessOrEqual(t, s.rep.bumps.Load(), int64(1), s.rep.name)
	}
	old.proxy.Restore()
}

// TestConnectAnyWaitsForEndpoints gives ConnectAny a resolver that names
// no server, then one: the client is Waiting with ErrNoEndpoints, then
// connects as soon as the set changes, without waiting out its backoff.
func TestConnectAnyWaitsForEndpoints(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 1)
	ctx := testkit.Ctx(t, time.Minute)
	r := remote.Static()
	cl, err := remote.ConnectAny(ctx, r, remote.WithBackoff(remote.Backoff{Initial: time.Minute}))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	testkit.Eventually(t, "the client waits", func() bool { return cl.State() == remote.Waiting })
	_, err = cl.Registry().List(ctx)
	require.ErrorIs(t, err, remote.ErrDisconnected)
	require.ErrorIs(t, cl.Err(), remote.ErrDisconnected)
	assert.Contains(t, cl.Err().Error(), "names none")
	// Both say why in a way code can test, not only in their text.
	assert.ErrorIs(t, err, remote.ErrNoEndpoints)
	assert.ErrorIs(t, cl.Err(), remote.ErrNoEndpoints)

	r.Update(fleet[0].ep)
	require.NoError(t, cl.WaitConnected(ctx))
	ep, ok := cl.Endpoint()
	require.True(t, ok)
	assert.Equal(t, "s0", ep.ID)
}

// TestConnectAnyChecksItsResolver: a missing resolver, or a Static one
// naming an endpoint without an address, fails ConnectAny and ConnectAll.
func TestConnectAnyChecksItsResolver(t *testing.T) {
	ctx := context.Background()
	_, err := remote.ConnectAny(ctx, nil)
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	_, err = remote.ConnectAll(ctx, remote.Static(remote.Endpoint{Network: "tcp"}))
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	// One ID for two servers: one of them would be left out silently.
	twice := remote.Static(remote.Endpoint{Network: "tcp", Addr: "127.0.0.1:1", ID: "r"},
		remote.Endpoint{Network: "tcp", Addr: "127.0.0.1:2", ID: "r"})
	_, err = remote.ConnectAny(ctx, twice)
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	assert.ErrorContains(t, err, `have the same ID "r"`)
	_, err = remote.ConnectAll(ctx, twice)
	require.ErrorIs(t, err, broker.ErrInvalidOption)
}

// TestPoolRefusesOneIDForTwoServers: a resolver that names one ID at two
// addresses after a good set is reported (Pool.Err matches ErrResolver)
// and the pool keeps the good set; the same endpoint named twice counts
// once.
func TestPoolRefusesOneIDForTwoServers(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 2)
	ctx := testkit.Ctx(t, time.Minute)
	r := remote.Static(fleet[0].ep, fleet[0].ep)
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "one client", func() bool { return len(pool.Clients()) == 1 })
	clash := fleet[1].ep
	clash.ID = fleet[0].ep.ID
	r.Update(fleet[0].ep, clash)
	testkit.Eventually(t, "the clash is reported", func() bool { return errors.Is(pool.Err(), remote.ErrResolver) })
	assert.ErrorContains(t, pool.Err(), "have the same ID")
	assert.Equal(t, []remote.Endpoint{fleet[0].ep}, pool.Endpoints(), "the good set stays")
}

// gatherWho asks every server of the pool who it is, and returns the
// answers by endpoint ID, and the errors likewise.
func gatherWho(t *testing.T, pool *remote.Pool, timeout time.Duration) (map[string]string, map[string]error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	eps, targets := pool.Targets("fleet")
	got, failed := map[string]string{}, map[string]error{}
	for res := range remote.Gather[string](ctx, targets, "Who") {
		if res.Err != nil {
			failed[eps[res.Index].ID] = res.Err
			continue
		}
		got[eps[res.Index].ID] = res.Value
	}
	return got, failed
}

// TestPoolFollowsItsResolver follows a Static resolver as servers join and
// leave: a joining server is dialled, a leaving one's client is closed,
// Client finds a client by endpoint ID, and a Gather over the pool reaches
// every server, a dead one failing only its own result.
func TestPoolFollowsItsResolver(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 3)
	ctx := testkit.Ctx(t, time.Minute)
	r := remote.Static(fleet[0].ep, fleet[1].ep)
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "two clients", func() bool { return len(pool.Clients()) == 2 })
	for _, cl := range pool.Clients() {
		require.NoError(t, cl.WaitConnected(ctx))
	}
	got, failed := gatherWho(t, pool, 10*time.Second)
	assert.Equal(t, map[string]string{"s0": "s0", "s1": "s1"}, got)
	assert.Empty(t, failed)
	s0, ok := pool.Client("s0")
	require.True(t, ok)
	ep, ok := s0.Endpoint()
	require.True(t, ok)
	assert.Equal(t, fleet[0].ep.Addr, ep.Addr)

	// s0 leaves and s2 joins.
	r.Update(fleet[1].ep, fleet[2].ep)
	testkit.Eventually(t, "s0's client is closed", func() bool { return s0.State() == remote.Closed })
	_, ok = pool.Client("s0")
	assert.False(t, ok)
	s2, ok := pool.Client("s2")
	require.True(t, ok)
	require.NoError(t, s2.WaitConnected(ctx))
	got, failed = gatherWho(t, pool, 10*time.Second)
	assert.Equal(t, map[string]string{"s1": "s1", "s2": "s2"}, got)
	assert.Empty(t, failed)
	s1, _ := pool.Client("s1")
	assert.Equal(t, []*remote.Client{s1, s2}, pool.Clients(), "in the resolver's order")
	assert.Equal(t, []remote.Endpoint{fleet[1].ep, fleet[2].ep}, pool.Endpoints())
	assert.Equal(t, int64(1), s1.Stats().Connects, "a server that stays keeps its client")

	// A dead server fails its own result; the others answer.
	fleet[1].proxy.Blackhole(true)
	got, failed = gatherWho(t, pool, time.Second)
	assert.Equal(t, map[string]string{"s2": "s2"}, got)
	assert.Contains(t, failed, "s1")
	fleet[1].proxy.Restore()

	require.NoError(t, pool.Close())
	for _, cl := range pool.Clients() {
		assert.Equal(t, remote.Closed, cl.State())
	}
}

// TestConnectAnyRefusedOnlyByAll: a client every server refuses is
// Refused, with an error matching the refusal and naming each server; one
// that a server refuses while another is down is only Waiting, since the
// down one may accept it when it is back.
func TestConnectAnyRefusedOnlyByAll(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	refusing := func() remote.Endpoint {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := broker.NewServer(registry.New(), broker.WithToken("right"))
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-served })
		return remote.Endpoint{Network: "tcp", Addr: ln.Addr().String()}
	}
	a, b := refusing(), refusing()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	downEp := remote.Endpoint{Network: "tcp", Addr: down.Addr().String()}
	down.Close()

	opts := append(fleetOptions(), remote.WithBroker(broker.WithToken("wrong")))
	all, err := remote.ConnectAny(ctx, remote.Static(a, b), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { all.Close() })
	testkit.Eventually(t, "refused by both", func() bool { return all.State() == remote.Refused })
	require.ErrorIs(t, all.Err(), broker.ErrAuthFailed)
	assert.Contains(t, all.Err().Error(), a.Addr)
	assert.Contains(t, all.Err().Error(), b.Addr)

	some, err := remote.ConnectAny(ctx, remote.Static(a, downEp), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { some.Close() })
	testkit.Eventually(t, "a pass failed", func() bool { return some.Stats().DialFailures > 0 })
	assert.Zero(t, some.Stats().Refusals)
	assert.NotEqual(t, remote.Refused, some.State())
}

// TestPoolFollowsAServerThatMoved: a server restarted on another address
// under the same endpoint ID keeps its client in the pool, and that client
// dials the new address: a reference obtained before the move works after
// it. (The pool used to keep dialling the old address for good.)
func TestPoolFollowsAServerThatMoved(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 2)
	ctx := testkit.Ctx(t, time.Minute)
	at := func(s *fleetServer) remote.Endpoint {
		ep := s.ep
		ep.ID = "region"
		return ep
	}
	r := remote.Static(at(fleet[0]))
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "a client", func() bool { return len(pool.Clients()) == 1 })
	cl, ok := pool.Client("region")
	require.True(t, ok)
	require.NoError(t, cl.WaitConnected(ctx))
	fr, err := cl.Registry().Lookup(ctx, "fleet")
	require.NoError(t, err)
	who, err := broker.Call[string](ctx, fr, "Who")
	require.NoError(t, err)
	require.Equal(t, "s0", who)

	// The server at the old address goes away; the resolver names the
	// new one under the same ID.
	fleet[0].proxy.Refuse(true)
	fleet[0].proxy.Reset()
	r.Update(at(fleet[1]))
	testkit.Eventually(t, "the client reaches the new address", func() bool {
		ep, ok := cl.Endpoint()
		return ok && ep.Addr == fleet[1].ep.Addr
	})
	same, ok := pool.Client("region")
	require.True(t, ok)
	assert.Same(t, cl, same, "the server kept its client")
	who, err = broker.Call[string](remote.WaitForLink(ctx), fr, "Who")
	require.NoError(t, err, "the reference obtained before the move works after it")
	assert.Equal(t, "s1", who)
}
