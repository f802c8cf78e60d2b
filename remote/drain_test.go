package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestClientRedialsAtOnceWhenServerDrains drains the client's server
// twice in a row (a rolling restart behind one address: a proxy the test
// points at the next server) while a non-idempotent call is in flight. The
// backoff is an hour and never starts over, so a client that waited out
// one, or counted a drain as a failed attempt (the second would then be
// waited out), would hang: instead it is back at once each time, with one
// Disconnected and one Connected per drain, the call in flight finishes
// where it started, and the same *Ref works on each new server.
func TestClientRedialsAtOnceWhenServerDrains(t *testing.T) {
	leakcheck.Check(t)
	ua, ub, uc := newUsers("a"), newUsers("b"), newUsers("c")
	a := startServer(t, "127.0.0.1:0", publish(t, ua))
	b := startServer(t, "127.0.0.1:0", publish(t, ub))
	c := startServer(t, "127.0.0.1:0", publish(t, uc))
	proxy := proxyTo(t, a.addr)
	// A dead-peer timeout far above fast()'s, so that a loaded machine
	// cannot add a transition of its own to the ones counted below.
	cl, tr := connectWatched(t, proxy.Addr(), WithBackoff(Backoff{Initial: time.Hour, Max: time.Hour}),
		WithBroker(broker.WithDeadPeerTimeout(10*time.Second)))
	ctx := testkit.Ctx(t, 30*time.Second)

	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	var got string
	require.NoError(t, users.Call(ctx, "Get", &got, "x"))
	require.Equal(t, "a:x", got)
	tr.reach(t, 1, 0)

	held := make(chan error, 1)
	go func() {
		var n int64
		held <- users.Call(ctx, "Hold", &n)
	}()
	ua.waitHolding(t, "Hold", held)

	proxy.SetTarget(b.addr)
	shut := make(chan error, 1)
	go func() { shut <- a.srv.Shutdown(ctx) }()
	tr.reach(t, 2, 1)
	require.NoError(t, users.Call(ctx, "Get", &got, "x"))
	assert.Equal(t, "b:x", got, "the same Ref works on the new server")

	close(ua.gate)
	require.NoError(t, <-held, "the call in flight finished on the draining server")
	require.NoError(t, <-shut)
	assert.Equal(t, int64(1), ua.bumps.Load(), "Hold ran once")
	assert.Zero(t, ub.bumps.Load(), "and was not repeated")

	proxy.SetTarget(c.addr)
	require.NoError(t, b.srv.Shutdown(ctx))
	tr.reach(t, 3, 2)
	require.NoError(t, users.Call(ctx, "Get", &got, "x"))
	assert.Equal(t, "c:x", got)

	conns, disconns := tr.counts()
	assert.Equal(t, [2]int{3, 2}, [2]int{conns, disconns}, "one signal per transition")
	st := cl.Stats()
	assert.Zero(t, st.DialFailures)
	cl.mu.Lock()
	attempts, last := cl.attempts, cl.lastErr
	cl.mu.Unlock()
	assert.Zero(t, attempts, "a drain is not a failed attempt")
	assert.ErrorIs(t, last, broker.ErrGoingAway)
}

// TestRollingDrainRunsEveryCallOnce keeps callers making a non-idempotent
// call through one *Ref while their server drains and another takes its
// place: every call succeeds, and the servers ran exactly as many as
// succeeded (none was lost, none repeated). Calls the draining server
// refused (they did not run) were made again on the new link.
func TestRollingDrainRunsEveryCallOnce(t *testing.T) {
	leakcheck.Check(t)
	ua, ub := newUsers("a"), newUsers("b")
	a := startServer(t, "127.0.0.1:0", publish(t, ua))
	b := startServer(t, "127.0.0.1:0", publish(t, ub))
	proxy := proxyTo(t, a.addr)
	cl := connect(t, proxy.Addr())
	ctx := testkit.Ctx(t, 30*time.Second)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)

	var ok atomic.Int64
	var failed []error
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var n int64
				if err := users.Call(ctx, "Bump", &n); err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
					return
				}
				ok.Add(1)
			}
		}()
	}
	require.Eventually(t, func() bool { return ua.bumps.Load() > 100 }, 20*time.Second, time.Millisecond)
	proxy.SetTarget(b.addr)
	require.NoError(t, a.srv.Shutdown(ctx))
	// Not require: when the calls stop coming, the callers' errors below
	// say why.
	assert.Eventually(t, func() bool { return ub.bumps.Load() > 100 }, 20*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()

	assert.Empty(t, failed)
	assert.Equal(t, ok.Load(), ua.bumps.Load()+ub.bumps.Load(), "every call that succeeded ran once, on one server")
	t.Logf("%d calls on the draining server, %d on the next", ua.bumps.Load(), ub.bumps.Load())
}

// TestRefusedCallIsNotRepeatedThroughARelaysLink checks refusedDraining's
// guard: a refusal whose own link is up (a relay passing on its upstream's)
// is not taken for this link's drain.
func TestRefusedCallIsNotRepeatedThroughARelaysLink(t *testing.T) {
	leakcheck.Check(t)
	ua := newUsers("a")
	startServer(t, "127.0.0.1:0", publish(t, ua))
	s := startServer(t, "127.0.0.1:0", publish(t, ua))
	cl := connect(t, s.addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, cl.WaitConnected(ctx))
	refusal := errors.Join(broker.ErrGoingAway)
	assert.False(t, refusedDraining(refusal, cl.Conn()), "the client's own link did not say it goes away")
	assert.False(t, refusedDraining(refusal, nil))
}

// TestRelayAnswersItsOwnHealth: asked through a relay, the health call is
// answered by the relay, not passed upstream; and it goes on answering
// while its upstream is gone.
func TestRelayAnswersItsOwnHealth(t *testing.T) {
	leakcheck.Check(t)
	origin := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")), broker.WithName("origin"))
	cl := connect(t, origin.addr)
	edge := startServer(t, "127.0.0.1:0", cl.Registry(), broker.WithName("edge"))
	ctx := testkit.Ctx(t, 30*time.Second)
	conn, err := broker.Dial(ctx, "tcp", edge.addr)
	require.NoError(t, err)
	defer func() { conn.Close(); <-conn.Done() }()

	h, err := broker.Health(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, "edge", h.Name)
	assert.Equal(t, broker.StatusServing, h.Status)
	origin.stop()
	h, err = broker.Health(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, "edge", h.Name)
}

// TestRelayRidesOutItsUpstreamDraining: a relay follows two servers with
// ConnectAny; the one it uses drains while a client of the relay keeps
// calling through it, an idempotent and a non-idempotent method in turn.
// No call fails (the relay's upstream refusals are made again on its next
// link, and the client's own link to the relay stays up), every Bump that
// succeeded ran exactly once, and the calls end up on the other server.
func TestRelayRidesOutItsUpstreamDraining(t *testing.T) {
	leakcheck.Check(t)
	ua, ub := newUsers("a"), newUsers("b")
	a := startServer(t, "127.0.0.1:0", publish(t, ua))
	b := startServer(t, "127.0.0.1:0", publish(t, ub))
	up, err := ConnectAny(context.Background(), Static(Endpoint{Network: "tcp", Addr: a.addr, ID: "a"}, Endpoint{Network: "tcp", Addr: b.addr, ID: "b"}), fast()...)
	require.NoError(t, err)
	t.Cleanup(func() { up.Close() })
	edge := startServer(t, "127.0.0.1:0", up.Registry())
	down := connect(t, edge.addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	users, err := down.Registry().Lookup(WaitForLink(ctx), "users")
	require.NoError(t, err)
	var got string
	require.NoError(t, users.Call(ctx, "Get", &got, "x"))
	drain, other := a, "b"
	if got == "b:x" {
		drain, other = b, "a"
	}

	stop := make(chan struct{})
	failed := make(chan error, 1)
	var bumps int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var s string
			var n int64
			err := users.Call(ctx, "Get", &s, "y")
			if err == nil {
				err = users.Call(ctx, "Bump", &n)
			}
			if err != nil {
				failed <- err
				return
			}
			bumps++
		}
	}()
	time.Sleep(30 * time.Millisecond) // calls are flowing
	require.NoError(t, drain.srv.Shutdown(ctx))
	require.NoError(t, users.Call(ctx, "Get", &got, "z"))
	assert.Equal(t, other+":z", got, "the relay moved to the other server")
	close(stop)
	<-done
	select {
	case err := <-failed:
		t.Fatalf("a call through the relay failed while its upstream drained: %v", err)
	default:
	}
	assert.Equal(t, bumps, ua.bumps.Load()+ub.bumps.Load(), "every Bump that succeeded ran once")
}

// TestCallerHoldingTheOldTargetIsMadeAgain plays a caller that resolved a
// *Ref on a server just before the server drained, and made its call only
// after another caller had moved the Ref to the next server: the late call
// is refused unsent as made on a connection going away (so Call makes it
// again on the new link), not failed as made on a released reference.
func TestCallerHoldingTheOldTargetIsMadeAgain(t *testing.T) {
	leakcheck.Check(t)
	ua, ub := newUsers("a"), newUsers("b")
	a := startServer(t, "127.0.0.1:0", publish(t, ua))
	b := startServer(t, "127.0.0.1:0", publish(t, ub))
	proxy := proxyTo(t, a.addr)
	cl, tr := connectWatched(t, proxy.Addr())
	ctx := testkit.Ctx(t, 30*time.Second)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	tr.reach(t, 1, 0)
	old, oldConn, err := users.resolve(ctx) // the late caller's view
	require.NoError(t, err)

	held := make(chan error, 1)
	go func() { var n int64; held <- users.Call(ctx, "Hold", &n) }()
	ua.waitHolding(t, "Hold", held) // keeps the old connection up
	proxy.SetTarget(b.addr)
	shut := make(chan error, 1)
	go func() { shut <- a.srv.Shutdown(ctx) }()
	// The client is on b once it has heard the notice; a Get made before
	// that could still reach a, which has not begun to drain.
	tr.reach(t, 2, 1)
	var got string
	require.NoError(t, users.Call(ctx, "Get", &got, "x"), "another caller moves the Ref")
	require.Equal(t, "b:x", got)

	var n int64
	before := ua.bumps.Load() // Hold counts itself
	err = users.callOnce(ctx, old, "Bump", &n, nil)
	require.ErrorIs(t, err, broker.ErrGoingAway)
	assert.True(t, refusedDraining(err, oldConn), "Call makes it again on the new link: %v", err)
	assert.Equal(t, before, ua.bumps.Load(), "it did not run")

	close(ua.gate)
	require.NoError(t, <-held)
	require.NoError(t, <-shut)
}

// oldLinkEnded serves ua on a server A and next (a registry holding
// "users") on a server B, connects a client to A through a proxy and looks
// "users" up, then resolves that Ref's target on A (old, on oldConn) and
// ends the link, pointing the proxy at B: a caller left holding A's target
// while the client moves on.
func oldLinkEnded(t *testing.T, ctx context.Context, ua *users, next any) (*Ref, *broker.Ref, *broker.Conn) {
	t.Helper()
	a := startServer(t, "127.0.0.1:0", publish(t, ua))
	b := startServer(t, "127.0.0.1:0", next)
	proxy := proxyTo(t, a.addr)
	cl := connect(t, proxy.Addr())
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	old, oldConn, err := users.resolve(ctx)
	require.NoError(t, err)
	proxy.SetTarget(b.addr)
	proxy.Reset()
	<-oldConn.Done()
	return users, old, oldConn
}

// TestCallerOnAnOldLinkIsNotFailedByAnother drives, one step at a time, the
// two races TestRollingDrainRunsEveryCallOnce met on a loaded CI machine
// (1 run in hundreds): a caller resolved r's target on link A, A ended,
// and before that caller went on, another caller obtained the target again
// on link B. The first caller's call on the old target is refused as
// released (reobtain let it go), and its obtaining on A fails as not sent:
// both are recognised as "the call did not run, the client moved on", so
// Call and resolve make them again on B instead of failing the caller.
func TestCallerOnAnOldLinkIsNotFailedByAnother(t *testing.T) {
	leakcheck.Check(t)
	ua, ub := newUsers("a"), newUsers("b")
	ctx := testkit.Ctx(t, 30*time.Second)
	users, old, oldConn := oldLinkEnded(t, ctx, ua, publish(t, ub))
	var got string
	require.NoError(t, users.Call(WaitForLink(ctx), "Get", &got, "x"), "another caller obtains the target on B")
	require.Equal(t, "b:x", got)

	var n int64
	err := users.callOnce(ctx, old, "Bump", &n, nil)
	require.ErrorIs(t, err, broker.ErrReleased, "the old target was let go when B's was obtained")
	assert.True(t, users.droppedMeanwhile(err, old, oldConn), "Call makes it again on B: %v", err)

	_, err = users.reobtainHeld(ctx, oldConn)
	require.Error(t, err)
	assert.True(t, linkMovedOn(err, oldConn), "resolve obtains it again on B: %v", err)

	require.NoError(t, users.Call(ctx, "Bump", &n))
	assert.Zero(t, ua.bumps.Load())
	assert.Equal(t, int64(1), ub.bumps.Load())

	// What is not one of those races stays an error: a target released by
	// its own caller, on a link that is up.
	cur, curConn, err := users.resolve(ctx)
	require.NoError(t, err)
	assert.False(t, users.droppedMeanwhile(broker.ErrReleased, cur, curConn))
	assert.False(t, linkMovedOn(broker.ErrConnectionLost, curConn))
}

// gatedRegistry is a server's root whose Lookup of users waits until the
// test opens its gate, having said on entered that it was called.
type gatedRegistry struct {
	users   *users
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedRegistry) Lookup(ctx context.Context, name string) (*users, error) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
		return g.users, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestCallerOnAnOldLinkWhileAnotherObtainsIt: as in
// TestCallerOnAnOldLinkIsNotFailedByAnother, but the first caller calls its
// old target while the other caller is still obtaining the target on link
// B (its Lookup there waits). The old target must not look released by its
// own holder then: reobtain let it go before the new one was in place, so
// that the call failed with ErrReleased while the Ref still named the old
// target, and Call gave that error to its caller instead of making the
// call again on B.
func TestCallerOnAnOldLinkWhileAnotherObtainsIt(t *testing.T) {
	leakcheck.Check(t)
	ua, ub := newUsers("a"), newUsers("b")
	gated := &gatedRegistry{users: ub, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	ctx := testkit.Ctx(t, 30*time.Second)
	users, old, oldConn := oldLinkEnded(t, ctx, ua, gated)
	other := make(chan error, 1)
	go func() {
		var got string
		err := users.Call(WaitForLink(ctx), "Get", &got, "x")
		if err == nil && got != "b:x" {
			err = fmt.Errorf("got %q from B", got)
		}
		other <- err
	}()
	select {
	case <-gated.entered: // the other caller is obtaining the target on B
	case err := <-other:
		t.Fatalf("the other caller returned before obtaining the target on B: %v", err)
	}

	var n int64
	err := users.callOnce(ctx, old, "Bump", &n, nil)
	require.Error(t, err)
	assert.True(t, users.droppedMeanwhile(err, old, oldConn) || linkFailed(err, oldConn) && !errors.Is(err, broker.ErrConnectionLost),
		"Call makes it again on B (as not sent on a dead link, or on a target the Ref let go): %v", err)

	close(gated.gate)
	require.NoError(t, <-other)
	require.NoError(t, users.Call(ctx, "Bump", &n))
	assert.Zero(t, ua.bumps.Load())
	assert.Equal(t, int64(1), ub.bumps.Load())
}
