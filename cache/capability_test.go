package cache_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// plainStore is a manager written from the contract alone: it declares
// nothing (no RemoteMethods), so no call on it is ever replayed.
type plainStore struct {
	remoteable.Referenceable
	m *cache.Map[string, Item]
}

// Model returns the model: the caller gets a mirror.
func (s *plainStore) Model(ctx context.Context) (*cache.Map[string, Item], error) { return s.m, nil }

// plainServer serves a registry holding a plainStore under "store". Its
// fields are dropped by stop, so that the model can be collected once the
// server is gone (an owner that restarted).
type plainServer struct {
	mu   sync.Mutex
	srv  *broker.Server
	errc chan error
	addr string
}

func startPlainServer(t testing.TB, m *cache.Map[string, Item], opts ...broker.Option) *plainServer {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("store", &plainStore{m: m}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &plainServer{srv: broker.NewServer(reg, opts...), errc: make(chan error, 1), addr: ln.Addr().String()}
	srv := s.srv
	go func() { s.errc <- srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *plainServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Close()
	<-s.errc
	s.srv = nil
}

// plainMirror gets the model through cl exactly as the contract shows:
// Lookup, then Model into a *cache.Mirror, nothing declared.
func plainMirror(t testing.TB, cl *remote.Client) *cache.Mirror[string, Item] {
	t.Helper()
	ctx := testkit.Ctx(t, 90*time.Second)
	mgr, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, mgr.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	return mir
}

// TestChaosWithoutDeclarations is the code, with no RemoteMethods
// declaration, through a chain of relays while every link is reset and
// black-holed several times: the client's mirror resumes every time by the
// feed's token, ends equal to the source, and its watcher never sees a
// version go back or a change twice. Before feed tokens the client's
// mirror stopped for good at the first cut of its own link ("Model is not
// declared idempotent").
func TestChaosWithoutDeclarations(t *testing.T) {
	for _, relays := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d-hops", relays+2), func(t *testing.T) {
			leakcheck.Check(t)
			model := cache.NewMap[string, Item](cache.WithLogSize(256))
			srv := startPlainServer(t, model)
			// links[0] is server ← relay 1, links[i] relay i ← relay i+1,
			// the last one relay ← client.
			var links []*faultnet.Proxy
			addr := srv.addr
			for i := 0; i < relays; i++ {
				p := proxyTo(t, addr)
				links = append(links, p)
				addr = startRelay(t, connect(t, p.Addr())).addr
			}
			down := proxyTo(t, addr)
			links = append(links, down)
			mir := plainMirror(t, connect(t, down.Addr()))
			rec := watch(mir, &mir.StaleChanged)
			var lost atomic.Int32
			mir.Lost.Connect(func(error) { lost.Add(1) })

			stopWriter := startWriter(model, 2)

			cuts := 0
			for round := 0; round < 2; round++ {
				for li, p := range links {
					for _, how := range []string{"reset", "black hole"} {
						time.Sleep(50 * time.Millisecond) // changes flow between outages
						if how == "reset" {
							p.Reset()
						} else {
							p.Blackhole(true)
						}
						rec.waitStale(t, true)
						time.Sleep(30 * time.Millisecond) // changes pile up during the outage
						p.Restore()
						rec.waitStale(t, false)
						cuts++
						t.Logf("round %d, link %d, %s: live again", round, li, how)
					}
				}
			}
			writes := stopWriter()
			t.Logf("%d writes, source at version %d", writes, model.Version())

			testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == model.Version() })
			requireEqualModel(t, model, mir)
			require.False(t, mir.Stale())
			require.NotErrorIs(t, mir.Err(), cache.ErrSourceLost)
			require.Zero(t, lost.Load(), "the mirror never lost its source")
			testkit.Eventually(t, "the watcher sees the last version", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return rec.last == model.Version()
			})
			rec.mu.Lock()
			defer rec.mu.Unlock()
			require.Empty(t, rec.bad)
			seen := map[string]bool{}
			for _, ev := range rec.events {
				key := fmt.Sprint(ev.Key, "@", ev.Version)
				require.False(t, seen[key], "saw %s twice", key)
				seen[key] = true
			}
			requireOutagesShown(t, rec.stale, cuts, "the mirror")
		})
	}
}

// logBuffer is a buffer a logger or a running command writes while the
// test reads it.
type logBuffer = logbuf.Buffer

// TestMirrorOfRestartedOwnerIsLost: the owner restarts (a new process on
// the same address, a new model) and Model is not declared idempotent, so
// nothing may bring the mirror back. The mirror says so on the first
// connection to the new owner, within one backoff period and without
// retrying: Err matches ErrSourceLost (and broker.ErrDeadReference), Stale
// stays true, Lost fires once, and a warning goes to the client's logger.
// Through a relay, the relay's mirror is lost and tells the client's.
func TestMirrorOfRestartedOwnerIsLost(t *testing.T) {
	for _, relayed := range []bool{false, true} {
		name := "direct"
		if relayed {
			name = "through-a-relay"
		}
		t.Run(name, func(t *testing.T) {
			leakcheck.Check(t)
			old := cache.NewMap[string, Item]()
			require.NoError(t, old.Set("a", Item{Count: 1}))
			gone := weak.Make(old)
			srv := startPlainServer(t, old)
			old = nil
			up := proxyTo(t, srv.addr)
			addr := up.Addr()
			if relayed {
				addr = startRelay(t, connect(t, up.Addr())).addr
			}
			logs := &logBuffer{}
			logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
			// The client's logger, given either way: remote.WithLogger, or
			// broker.WithLogger for its connections.
			withLogger := remote.WithLogger(logger)
			if relayed {
				withLogger = remote.WithBroker(broker.WithLogger(logger))
			}
			cl, err := remote.Connect(testkit.Ctx(t, 90*time.Second), "tcp", addr, withLogger,
				remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
				remote.WithBroker(broker.WithDeadPeerTimeout(500*time.Millisecond)))
			require.NoError(t, err)
			t.Cleanup(func() { cl.Close() })
			mir := plainMirror(t, cl)
			lostc := make(chan error, 4)
			// The client's successful dials when Lost fires, read in the
			// handler: the client counts a dial before it turns Connected
			// and emits Connected, so the count cannot lag behind the
			// link that caused the loss, whereas a Connected handler may
			// run after Lost has fired (the mirror may react to the
			// state first).
			var connects atomic.Int64
			mir.Lost.Connect(func(err error) {
				connects.Store(cl.Stats().Connects)
				lostc <- err
			})

			srv.stop()
			testkit.Eventually(t, "the mirror goes stale", mir.Stale)
			testkit.Eventually(t, "the old model is gone", func() bool {
				runtime.GC()
				return gone.Value() == nil
			})
			fresh := cache.NewMap[string, Item]()
			require.NoError(t, fresh.Set("b", Item{Count: 2}))
			up.SetTarget(startPlainServer(t, fresh).addr)

			var lost error
			select {
			case lost = <-lostc:
			case <-time.After(30 * time.Second):
				t.Fatalf("the mirror never reported that it lost its source; Err: %v, stale %v; logs: %s", mir.Err(), mir.Stale(), logs)
			}
			require.ErrorIs(t, lost, cache.ErrSourceLost)
			require.Equal(t, broker.FailedPrecondition, broker.CodeOf(lost), "%v", lost)
			require.Equal(t, broker.FailedPrecondition, broker.CodeOf(mir.Err()), "%v", mir.Err())
			require.True(t, strings.HasPrefix(lost.Error(), "tether: "), lost.Error())
			require.Equal(t, 1, strings.Count(lost.Error(), "tether:"), lost.Error())
			if !relayed {
				require.ErrorIs(t, lost, broker.ErrDeadReference)
				require.ErrorContains(t, lost, "not declared idempotent")
				// Within one backoff period: on the first connection to the
				// new owner (the client's second), not after a round of
				// retries.
				require.Equal(t, int64(2), connects.Load(), "connections made before the mirror was declared lost")
			}
			require.ErrorIs(t, mir.Err(), cache.ErrSourceLost)
			require.True(t, mir.Stale())
			v, ok := mir.Get("a")
			require.True(t, ok, "the mirror keeps its last state")
			require.Equal(t, 1, v.Count)
			testkit.Eventually(t, "the warning is logged", func() bool {
				return strings.Contains(logs.String(), "level=WARN") &&
					strings.Contains(logs.String(), "mirror stopped following its model")
			})
			// Lost for good: no endless retrying, one signal.
			time.Sleep(300 * time.Millisecond)
			require.Empty(t, lostc, "Lost fired once")
			require.Zero(t, fresh.Subscribers(), "the mirror never followed the new owner's model")
			require.ErrorIs(t, mir.Err(), cache.ErrSourceLost)
			require.True(t, mir.Stale())
		})
	}
}

// TestFeedTokens checks the built-in call that presents a feed's token:
// a garbage token is refused as bad arguments and an unknown one with a
// typed error, both without harm to the connection; a token issued to a
// subscriber finds the feed on a new connection, even on a server that
// gives each peer a root of its own (WithRealm), since the token is the
// authority; a closed mirror's feed no longer answers to its token.
func TestFeedTokens(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	model := cache.NewMap[string, Item]()
	require.NoError(t, model.Set("a", Item{Count: 1}))
	srv := startPlainServer(t, model)
	c, err := broker.Dial(ctx, "tcp", srv.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); <-c.Done() })

	var ref *broker.Ref
	err = c.Root().Call(ctx, captable.Method, &ref, "garbage")
	require.ErrorIs(t, err, broker.ErrBadArguments)
	err = c.Root().Call(ctx, captable.Method, &ref)
	require.ErrorIs(t, err, broker.ErrBadArguments)
	err = c.Root().Call(ctx, captable.Method, &ref, strings.Repeat("ab", captable.TokenLen/2))
	require.ErrorIs(t, err, captable.ErrUnknown)
	require.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())

	// A real token: a relay-less client's mirror learns it; its own feed
	// has another (each hop issues its own).
	cl := connect(t, srv.addr)
	mir := plainMirror(t, cl)
	mirTok := mirrorToken(t, mir)
	modelTok := modelToken(t, model)
	require.NotEqual(t, modelTok, mirTok)
	var fr *broker.Ref
	require.NoError(t, c.Root().Call(ctx, captable.Method, &fr, modelTok))
	require.True(t, fr.Cacheable(), "the feed comes back as a Cacheable")
	var other *cache.Mirror[string, Item]
	require.NoError(t, c.Root().Call(ctx, captable.Method, &other, modelTok))
	t.Cleanup(func() { other.Close() })
	requireEqualModel(t, model, other)
	fr.Release()

	// A token is valid only on the server that issued it: another server
	// of the process (or one that replaced a stopped server) does not
	// answer for it.
	other2 := startPlainServer(t, cache.NewMap[string, Item]())
	c2, err := broker.Dial(ctx, "tcp", other2.addr)
	require.NoError(t, err)
	t.Cleanup(func() { c2.Close(); <-c2.Done() })
	err = c2.Root().Call(ctx, captable.Method, &ref, modelTok)
	require.ErrorIs(t, err, captable.ErrUnknown)

	// A realm server answers it, on any of its connections: the token is
	// the authority, not the root the realm gives each peer.
	realmModel := cache.NewMap[string, Item]()
	require.NoError(t, realmModel.Set("r", Item{Count: 3}))
	realm := broker.WithRealm(func(ctx context.Context, p remoteable.Peer) (any, error) {
		return &plainStore{m: realmModel}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	rsrv := broker.NewServer(nil, realm)
	rdone := make(chan error, 1)
	go func() { rdone <- rsrv.Serve(ln) }()
	t.Cleanup(func() { rsrv.Close(); <-rdone })
	rc1, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { rc1.Close(); <-rc1.Done() })
	var subscribed *cache.Mirror[string, Item] // issues the token on the realm server
	require.NoError(t, rc1.Root().Call(ctx, "Model", &subscribed))
	t.Cleanup(func() { subscribed.Close() })
	rc, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { rc.Close(); <-rc.Done() })
	var viaRealm *cache.Mirror[string, Item]
	require.NoError(t, rc.Root().Call(ctx, captable.Method, &viaRealm, modelToken(t, realmModel)))
	t.Cleanup(func() { viaRealm.Close() })
	requireEqualModel(t, realmModel, viaRealm)

	// A closed mirror's feed is gone from the table.
	require.NoError(t, mir.Close())
	err = c.Root().Call(ctx, captable.Method, &ref, mirTok)
	require.ErrorIs(t, err, captable.ErrUnknown)
	require.NoError(t, c.Err(), "refusals leave the connection up")
}

// modelToken and mirrorToken read a feed's token as its subscribers get it.
func modelToken(t testing.TB, m *cache.Map[string, Item]) string {
	t.Helper()
	return feedToken(t, m.CacheFeed())
}

func mirrorToken(t testing.TB, m *cache.Mirror[string, Item]) string {
	t.Helper()
	return feedToken(t, m.CacheFeed())
}

func feedToken(t testing.TB, pub any) string {
	t.Helper()
	p, ok := pub.(interface{ FeedToken() string })
	require.True(t, ok, "%T", pub)
	return p.FeedToken()
}

// TestRelayKeepsAMirrorForItsHolderToResume: the client's link to the
// relay is down for longer than the relay keeps a mirror nobody holds
// (one second after an explicit release): since the last holder's
// connection died, the relay keeps its mirror for the resume window, and
// the client's mirror resumes it by its token when the link comes back.
// Before the window the relay dropped its mirror a second after the cut,
// and the client's mirror, whose Model is not declared idempotent, was
// lost.
func TestRelayKeepsAMirrorForItsHolderToResume(t *testing.T) {
	leakcheck.Check(t)
	model := cache.NewMap[string, Item]()
	srv := startPlainServer(t, model)
	relayCl := connect(t, srv.addr)
	down := proxyTo(t, startRelay(t, relayCl).addr)
	mir := plainMirror(t, connect(t, down.Addr()))
	rec := watch(mir, &mir.StaleChanged)
	var lost atomic.Int32
	mir.Lost.Connect(func(error) { lost.Add(1) })
	require.NoError(t, model.Set("before", Item{Count: 1}))
	testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == model.Version() })

	down.Refuse(true)
	down.Reset()
	rec.waitStale(t, true)
	for i := 0; i < 20; i++ {
		require.NoError(t, model.Set(fmt.Sprint("during", i%3), Item{Count: i}))
	}
	time.Sleep(1500 * time.Millisecond) // past the relay's idle grace of one second
	require.Equal(t, 1, model.Subscribers(), "the relay kept its subscription upstream")
	down.Restore()
	rec.waitStale(t, false)
	testkit.Eventually(t, "the mirror catches up", func() bool { return mir.Version() == model.Version() })
	requireEqualModel(t, model, mir)
	require.Zero(t, lost.Load())
	require.Equal(t, 1, model.Subscribers())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Empty(t, rec.bad)
}

// TestFeedTokenIsBoundToItsSubscriber: on a server that verifies its
// peers, a feed's token is honoured only for the identity it was issued
// to. Another authenticated peer presenting it (a stolen token) is
// refused with the same error as an unknown token; the subscriber itself
// gets the feed back on a new connection.
func TestFeedTokenIsBoundToItsSubscriber(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	model := cache.NewMap[string, Item]()
	require.NoError(t, model.Set("secret", Item{Count: 7}))
	srv := startPlainServer(t, model, broker.WithAuthenticator(broker.Tokens(map[string]string{"alice": "a", "mallory": "m"})))
	dialAs := func(name, token string) *broker.Conn {
		c, err := broker.Dial(ctx, "tcp", srv.addr, broker.WithName(name), broker.WithToken(token))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(); <-c.Done() })
		return c
	}
	alice := dialAs("alice", "a")
	var store *broker.Ref
	require.NoError(t, alice.Root().Call(ctx, "Lookup", &store, "store"))
	var mir *cache.Mirror[string, Item]
	require.NoError(t, store.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	tok := modelToken(t, model)

	var stolen *cache.Mirror[string, Item]
	err := dialAs("mallory", "m").Root().Call(ctx, captable.Method, &stolen, tok)
	require.ErrorIs(t, err, captable.ErrUnknown)
	require.Nil(t, stolen)

	var back *cache.Mirror[string, Item]
	require.NoError(t, dialAs("alice", "a").Root().Call(ctx, captable.Method, &back, tok))
	t.Cleanup(func() { back.Close() })
	requireEqualModel(t, model, back)
}
