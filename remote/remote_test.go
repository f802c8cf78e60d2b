package remote

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
)

// TestWrapperSurvivesOutages cuts the link three ways and checks that the
// same *Ref works again afterwards, that calls during the outage failed
// fast with ErrDisconnected, and that each signal fired once per outage.
func TestWrapperSurvivesOutages(t *testing.T) {
	kinds := []struct {
		name   string
		cut    func(p *serverAndProxy)
		repair func(p *serverAndProxy)
	}{
		{"reset", func(p *serverAndProxy) {
			p.proxy.Refuse(true)
			p.proxy.Reset()
		}, func(p *serverAndProxy) { p.proxy.Restore() }},
		{"black hole", func(p *serverAndProxy) {
			p.proxy.Blackhole(true) // found by keepalives; new dials hang until their timeout
		}, func(p *serverAndProxy) { p.proxy.Restore() }},
		{"server restart", func(p *serverAndProxy) {
			p.server.stop()
		}, func(p *serverAndProxy) {
			// A new server on the same address, with a fresh registry.
			p.server = startServer(p.t, p.server.addr, publish(p.t, newUsers("second")))
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			leakcheck.Check(t)
			p := &serverAndProxy{t: t}
			p.server = startServer(t, "127.0.0.1:0", publish(t, newUsers("first")))
			p.proxy = proxyTo(t, p.server.addr)
			// Connected handlers run after the state turns Connected, and
			// WaitConnected may return before they did: the counts are
			// awaited (reach) before they are compared.
			cl, tr := connectWatched(t, p.proxy.Addr(), quickDeadPeer())
			ctx := testkit.Ctx(t, time.Minute)
			require.NoError(t, cl.WaitConnected(ctx))
			tr.reach(t, 1, 0)

			users, err := cl.Registry().Lookup(ctx, "users")
			require.NoError(t, err)
			got, err := broker.Call[string](ctx, users, "Get", "alice")
			require.NoError(t, err)
			assert.Equal(t, "first:alice", got)

			k.cut(p)
			waitState(t, cl, Waiting)
			for i := 0; i < 3; i++ {
				start := time.Now()
				_, err := broker.Call[string](ctx, users, "Get", "alice")
				assert.ErrorIs(t, err, ErrDisconnected)
				assert.Less(t, time.Since(start), time.Second, "fails fast during an outage")
			}

			k.repair(p)
			require.NoError(t, cl.WaitConnected(ctx))
			got, err = broker.Call[string](ctx, users, "Get", "bob")
			require.NoError(t, err, "the same wrapper works after the outage")
			if k.name == "server restart" {
				assert.Equal(t, "second:bob", got, "re-obtained from the new registry")
			} else {
				assert.Equal(t, "first:bob", got)
			}
			tr.reach(t, 2, 1)
			connected, disconnected := tr.counts()
			assert.Equal(t, 2, connected, "Connected once after the outage")
			assert.Equal(t, 1, disconnected, "Disconnected once for the outage")

			require.NoError(t, cl.Close())
			assert.Equal(t, Closed, cl.State())
			_, err = broker.Call[string](ctx, users, "Get", "x")
			assert.ErrorIs(t, err, broker.ErrClosed)
		})
	}
}

type serverAndProxy struct {
	t      *testing.T
	server *server
	proxy  interface {
		Refuse(bool)
		Reset()
		Blackhole(bool)
		Restore()
		Addr() string
	}
}

func TestCallWaitsForDialInProgressButNotForBackoff(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	p := proxyTo(t, s.addr)
	p.SetDelay(100 * time.Millisecond) // the first dial takes a while
	opts := append(fast(), WithBroker(broker.WithDeadPeerTimeout(5*time.Second)))
	cl, err := Connect(context.Background(), "tcp", p.Addr(), opts...)
	require.NoError(t, err)
	defer cl.Close()
	assert.Equal(t, Connecting, cl.State())
	// The first call waits for the first dial attempt.
	users, err := cl.Registry().Lookup(testkit.Ctx(t, time.Minute), "users")
	require.NoError(t, err)
	p.SetDelay(0)

	// During a backoff a call fails fast, unless it waits for the link.
	p.Refuse(true)
	p.Reset()
	waitState(t, cl, Waiting)
	_, err = broker.Call[string](testkit.Ctx(t, time.Minute), users, "Get", "a")
	assert.ErrorIs(t, err, ErrDisconnected)
	waited := make(chan error, 1)
	go func() {
		_, err := broker.Call[string](WaitForLink(testkit.Ctx(t, time.Minute)), users, "Get", "a")
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("a call that waits for the link returned during the outage: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.Restore()
	require.NoError(t, <-waited)

	// Waiting is bounded by the context.
	p.Refuse(true)
	p.Reset()
	waitState(t, cl, Waiting)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = broker.Call[string](WaitForLink(short), users, "Get", "a")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	p.Restore()
}

func TestInFlightCallsAreRepeatedOnlyWhenIdempotent(t *testing.T) {
	leakcheck.Check(t)
	u := newUsers("x")
	s := startServer(t, "127.0.0.1:0", publish(t, u))
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)

	// Not idempotent: the call in flight fails with ErrConnectionLost at
	// once — while the link is still down — and is not repeated.
	holdErr := make(chan error, 1)
	go func() { _, err := broker.Call[int64](ctx, users, "Hold"); holdErr <- err }()
	u.waitHolding(t, "Hold", holdErr)
	old := cl.Conn()
	p.Refuse(true)
	p.Reset()
	err = <-holdErr
	assert.ErrorIs(t, err, broker.ErrConnectionLost)
	now := cl.Conn()
	assert.True(t, now == nil || now == old, "it failed without waiting for a new link")
	p.Restore()
	require.NoError(t, cl.WaitConnected(ctx))
	time.Sleep(50 * time.Millisecond) // a repeat, if any, would have arrived
	assert.Equal(t, int64(1), u.bumps.Load(), "Hold ran once")

	// Idempotent: retried once after the reconnect, and succeeds.
	peekRes := make(chan error, 1)
	go func() { _, err := broker.Call[string](ctx, users, "Peek"); peekRes <- err }()
	u.waitHolding(t, "Peek", peekRes)
	p.Reset()
	select {
	case again := <-u.holding:
		require.Equal(t, "Peek", again, "repeated after the reconnect")
	case err := <-peekRes:
		t.Fatalf("Peek returned without being repeated: %v", err)
	}
	close(u.gate)
	require.NoError(t, <-peekRes)
}

func TestDerivedReferencesReplayOnlyIdempotentCalls(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("first")))
	cl := connect(t, s.addr)
	ctx := testkit.Ctx(t, time.Minute)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)

	var replayable, once *Ref
	require.NoError(t, users.Call(ctx, "Account", &replayable, "alice"))
	require.NoError(t, users.Call(ctx, "Open", &once, "bob"))
	owner, err := broker.Call[string](ctx, replayable, "Owner")
	require.NoError(t, err)
	assert.Equal(t, "first/alice", owner)
	owner, err = broker.Call[string](ctx, once, "Owner")
	require.NoError(t, err)
	assert.Equal(t, "first/bob", owner)

	s.stop()
	waitState(t, cl, Waiting)
	startServer(t, s.addr, publish(t, newUsers("second")))
	require.NoError(t, cl.WaitConnected(ctx))

	owner, err = broker.Call[string](ctx, replayable, "Owner")
	require.NoError(t, err, "Account is idempotent: replayed on the new server")
	assert.Equal(t, "second/alice", owner)
	_, err = broker.Call[string](ctx, once, "Owner")
	assert.ErrorIs(t, err, broker.ErrDeadReference, "Open is not idempotent: not replayed")
	assert.ErrorContains(t, err, "not declared idempotent")
}

func TestRegistryLookupErrors(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	cl := connect(t, s.addr)
	ctx := testkit.Ctx(t, time.Minute)
	_, err := cl.Registry().Lookup(ctx, "nobody")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	a, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	b, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	assert.Same(t, a, b, "one wrapper per name")
	names, err := cl.Registry().List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"users"}, names)
}

func TestConnectFailsOnlyOnBadOptions(t *testing.T) {
	_, err := Connect(context.Background(), "tcp", "127.0.0.1:1", WithDialTimeout(-1))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	_, err = Connect(context.Background(), "tcp", "127.0.0.1:1", WithBroker(broker.WithHandshakeLimits(4, 2)))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	assert.EqualError(t, err, "tether: WithHandshakeLimits applies to a server (NewServer), not to a dialer (Dial, NewConn, remote.Connect): remove it here")
	cl, err := Connect(context.Background(), "tcp", "127.0.0.1:1", fast()...) // nothing listens there
	require.NoError(t, err)
	waitState(t, cl, Waiting)
	_, err = cl.Registry().Lookup(testkit.Ctx(t, time.Minute), "users")
	assert.ErrorIs(t, err, ErrDisconnected)
	require.NoError(t, cl.Close())
	require.NoError(t, cl.Close())
	assert.True(t, errors.Is(cl.WaitConnected(testkit.Ctx(t, time.Minute)), broker.ErrClosed))
}

// TestWrapperPassedHomeIsTheOwnersObject: a wrapper given back as an
// argument to the process that owns its target arrives as the owner's own
// object, also after the link was replaced.
func TestWrapperPassedHomeIsTheOwnersObject(t *testing.T) {
	leakcheck.Check(t)
	u := newUsers("home")
	s := startServer(t, "127.0.0.1:0", publish(t, u))
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	var acct *Ref
	require.NoError(t, users.Call(ctx, "Account", &acct, "alice"))
	kind, err := broker.Call[string](ctx, users, "TypeOf", acct)
	require.NoError(t, err)
	assert.Equal(t, "*remote.account", kind, "the server got its own object, not a proxy")

	old := cl.Conn()
	p.Reset()
	<-old.Done()
	kind, err = broker.Call[string](WaitForLink(ctx), users, "TypeOf", acct)
	require.NoError(t, err)
	assert.Equal(t, "*remote.account", kind, "re-obtained on the new link, then sent home")
}

// TestClientStatsCountReconnects: a client counts its connections and
// failed dials; reconnects are the connections after the first.
func TestClientStatsCountReconnects(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, "127.0.0.1:0", publish(t, newUsers("x")))
	p := proxyTo(t, s.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	require.NoError(t, cl.WaitConnected(ctx))
	st := cl.Stats()
	assert.Equal(t, "connected", st.State)
	assert.Equal(t, int64(1), st.Connects)
	assert.Equal(t, int64(0), st.Reconnects)
	assert.Positive(t, st.Conn.BytesOut, "the current connection's figures")

	for i := range 2 {
		old := cl.Conn()
		failed := cl.Stats().DialFailures
		p.Refuse(true)
		p.Reset()
		<-old.Done()
		for cl.Stats().DialFailures == failed { // at least one dial refused
			require.True(t, cl.WaitForStateChange(ctx, cl.State()))
		}
		p.Refuse(false)
		require.NoError(t, cl.WaitConnected(ctx))
		assert.Equal(t, int64(i+1), cl.Stats().Reconnects)
	}
	assert.GreaterOrEqual(t, cl.Stats().DialFailures, int64(2))
}
