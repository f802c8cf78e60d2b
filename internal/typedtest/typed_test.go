package typedtest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// wantTranscript is what script prints on a new Manager, wherever it is.
var wantTranscript = []string{
	"Get(alice) = alice <alice@example.org>",
	"Get(nobody) fails; errors.Is(err, ErrNoSuchUser) = true",
	"Login(alice) = a Session of alice",
	"Owns(that session) = true",
	"Directory() = v2 [alice=alice@example.org bob=bob@example.org] stale=false",
	`SetEmail(alice@example.net): the watcher heard "alice is now alice@example.net"`,
	`Remove(bob): the watcher heard "bob left"`,
	"directory change: v3 set alice = alice@example.net",
	"directory change: v4 delete bob",
	"Directory now v4 [alice=alice@example.net] stale=false",
}

// TestSameTranscriptLocalDirectAndThroughARelay runs script against the
// local manager, a stub over a direct *remote.Ref and a stub through a
// relay (server → relay → client), each on a new manager, and compares
// the transcripts line by line.
func TestSameTranscriptLocalDirectAndThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	local, err := script(ctx, localUsers(t, ctx))
	require.NoError(t, err, "local:\n%s", lines(local))
	assert.Equal(t, wantTranscript, local, "local")
	direct, err := script(ctx, directUsers(t, ctx))
	require.NoError(t, err, "direct:\n%s", lines(direct))
	assert.Equal(t, local, direct, "a stub over a direct *remote.Ref")
	relayed, err := script(ctx, relayedUsers(t, ctx))
	require.NoError(t, err, "through a relay:\n%s", lines(relayed))
	assert.Equal(t, local, relayed, "a stub through a relay")
}

// lines joins a transcript for a failure message.
func lines(tr []string) string {
	var s string
	for _, l := range tr {
		s += "\t" + l + "\n"
	}
	return s
}

// localUsers looks a new manager up in a local registry: LookupAs returns
// the manager itself.
func localUsers(t *testing.T, ctx context.Context) Users {
	reg := registry.New()
	require.NoError(t, reg.Register("users", NewManager()))
	users, err := registry.LookupAs[Users](ctx, reg, "users")
	require.NoError(t, err)
	require.IsType(t, &Manager{}, users, "a local lookup gives the manager itself")
	return users
}

// directUsers serves a new manager and looks it up through a lasting
// client of the server.
func directUsers(t *testing.T, ctx context.Context) Users {
	reg := registry.New()
	require.NoError(t, reg.Register("users", NewManager()))
	_, addr := brokertest.Serve(t, reg, broker.WithName("server"))
	return remoteUsers(t, ctx, connect(t, addr))
}

// relayedUsers looks a new manager up through a relay.
func relayedUsers(t *testing.T, ctx context.Context) Users {
	return remoteUsers(t, ctx, startChain(t).cl)
}

// remoteUsers looks "users" up through cl and checks that it is a stub
// over a lasting reference.
func remoteUsers(t *testing.T, ctx context.Context, cl *remote.Client) Users {
	users, err := registry.LookupAs[Users](ctx, cl.Registry(), "users")
	require.NoError(t, err)
	require.IsType(t, &usersStub{}, users)
	require.IsType(t, &remote.Ref{}, users.(remoteable.Stub).TetherCaller(), "the stub wraps a lasting reference")
	return users
}

// chain is server → fault proxy → relay → client, the server publishing a
// new Manager as "users".
type chain struct {
	mgr   *Manager
	proxy *faultnet.Proxy // between the relay and the server
	up    *remote.Client  // the relay's client of the server
	cl    *remote.Client  // the client of the relay
}

// startChain starts a chain; t's cleanup stops it.
func startChain(t *testing.T) *chain {
	ch := &chain{mgr: NewManager()}
	reg := registry.New()
	require.NoError(t, reg.Register("users", ch.mgr))
	_, addr := brokertest.Serve(t, reg, broker.WithName("server"))
	var err error
	ch.proxy, err = faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { ch.proxy.Close() })
	ch.up = connect(t, ch.proxy.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	brokertest.ServeOn(t, ln, ch.up.Registry(), broker.WithName("relay"))
	ch.cl = connect(t, ln.Addr().String())
	return ch
}

// connect returns a lasting client of addr that redials quickly; t's
// cleanup closes it. The outages here reset the link, which is found at
// once: the dead-peer timeout is long, since a short one (400 ms) can end
// links merely starved of CPU on a loaded machine under -race.
func connect(t *testing.T, addr string) *remote.Client {
	cl, err := remote.Connect(context.Background(), "tcp", addr,
		remote.WithBroker(broker.WithDeadPeerTimeout(10*time.Second)),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithDialTimeout(500*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestTypedReferencesOutliveARelayOutage cuts the link between the server
// and the relay and restores it: the client's typed reference, the session
// it returned and the typed mirror obtained through it, all obtained
// before the cut, work after it, and the mirror receives the changes it
// missed as a replay.
func TestTypedReferencesOutliveARelayOutage(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	ch := startChain(t)
	users := remoteUsers(t, ctx, ch.cl)
	sess, err := users.Login(ctx, "alice")
	require.NoError(t, err)
	dir, err := users.Directory(ctx)
	require.NoError(t, err)
	require.IsType(t, &cache.Mirror[string, User]{}, dir)
	mir := dir.(*cache.Mirror[string, User])
	t.Cleanup(func() { mir.Close() })
	events := follow(mir)

	ch.proxy.Refuse(true)
	ch.proxy.Reset()
	require.Equal(t, "stale", events.next(t, ctx), "the mirror goes stale when the relay loses the server")
	_, err = users.Get(ctx, "alice")
	require.ErrorIs(t, err, remote.ErrDisconnected, "a typed call fails fast while the relay waits to redial")

	require.NoError(t, ch.mgr.Dir.Set("carol", User{Name: "carol", Email: "carol@example.org"}))
	ch.mgr.Dir.Delete("bob")
	ch.proxy.Restore()

	// The mirror resumes from its version: the relay's mirror replays what
	// it missed from the server's log, one version each, then goes live.
	got := []string{events.next(t, ctx), events.next(t, ctx), events.next(t, ctx)}
	assert.Equal(t, []string{"v3 set carol = carol@example.org", "v4 delete bob", "live"}, got)

	u, err := users.Get(remote.WaitForLink(ctx), "carol")
	require.NoError(t, err, "the typed reference obtained before the cut works after it")
	assert.Equal(t, "carol@example.org", u.Email)
	name, err := sess.Name(ctx)
	require.NoError(t, err, "so does the session Login returned (Login is idempotent)")
	assert.Equal(t, "alice", name)
	require.NoError(t, sess.SetEmail(ctx, "alice@example.net"))
	assert.Equal(t, "v5 set alice = alice@example.net", events.next(t, ctx), "the mirror follows changes made after the outage")
	want, wantV := ch.mgr.Dir.Snapshot()
	have, haveV := mir.Snapshot()
	assert.Equal(t, want, have)
	assert.Equal(t, wantV, haveV)
	assert.Equal(t, ch.mgr.Dir.Epoch(), mir.Epoch(), "the same model, resumed")
}

// mirrorEvents are a mirror's changes and stale/live transitions, in the
// order the mirror fired them.
type mirrorEvents chan string

// follow connects to mir's signals; the mirror's goroutine never blocks on
// the channel for long, since the test reads every event it expects.
func follow(mir *cache.Mirror[string, User]) mirrorEvents {
	ev := make(mirrorEvents, 64)
	mir.Changed.Connect(func(c cache.Change[string, User]) { ev <- describe(c) })
	mir.StaleChanged.Connect(func(stale bool) {
		if stale {
			ev <- "stale"
		} else {
			ev <- "live"
		}
	})
	return ev
}

// next returns the next event, failing t when none comes before ctx ends.
func (ev mirrorEvents) next(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case e := <-ev:
		return e
	case <-ctx.Done():
		t.Fatalf("no event from the mirror: %v", ctx.Err())
		return ""
	}
}
