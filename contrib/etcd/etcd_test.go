package etcd_test

import (
	"bytes"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/contrib/etcd"
	"github.com/tether-go/tether/contrib/etcd/internal/etcdtest"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remote"
)

// TestPoolFollowsAnnouncements announces servers one after another and
// withdraws one: a Pool on the etcd resolver dials each server that
// appears, drops the one withdrawn at once, and a gather over the pool
// reaches each server it follows.
func TestPoolFollowsAnnouncements(t *testing.T) {
	leakcheck.Check(t)
	e := startEtcd(t)
	cli := etcdClient(t, e.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	s0, s1, s2 := serve(t, "s0"), serve(t, "s1"), serve(t, "s2")
	s0.announce(t, cli)
	s1.announce(t, cli)

	pool, err := remote.ConnectAll(ctx, etcd.NewResolver(cli, prefix), fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "the pool follows s0 and s1", poolIs(pool, "s0", "s1"))
	assert.Equal(t, []string{"s0", "s1"}, gatherWho(ctx, pool))
	assert.Equal(t, s0.ep.Addr, pool.Endpoints()[0].Addr, "the endpoint's address came through etcd")

	s2.announce(t, cli)
	testkit.Eventually(t, "the pool follows s2 as it joins", poolIs(pool, "s0", "s1", "s2"))
	assert.Equal(t, []string{"s0", "s1", "s2"}, gatherWho(ctx, pool))

	require.NoError(t, s1.ann.Withdraw(ctx))
	assert.ErrorIs(t, s1.ann.Err(), etcd.ErrWithdrawn)
	testkit.Eventually(t, "the pool drops s1 once withdrawn", poolIs(pool, "s0", "s2"))
	assert.Equal(t, []string{"s0", "s2"}, gatherWho(ctx, pool))
	assert.NoError(t, pool.Err())
}

// TestPoolDropsServersWhoseLeaseLapses black-holes one server's link to
// etcd and hard-stops another (its process dies: no withdrawal): etcd
// drops each when its lease expires, and the pool follows. The server cut
// off from etcd says its announcement lapsed, and once its link is back it
// announces itself again and the pool dials it again.
func TestPoolDropsServersWhoseLeaseLapses(t *testing.T) {
	leakcheck.Check(t)
	e := startEtcd(t)
	cli := etcdClient(t, e.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	s0, s1, s2 := serve(t, "s0"), serve(t, "s1"), serve(t, "s2")
	holedCli, hole := proxiedClient(t, e.Addr())
	s0.announce(t, holedCli)
	deadCli, err := etcdtest.Client(e.Addr())
	require.NoError(t, err)
	s1.announce(t, deadCli)
	s2.announce(t, cli)

	pool, err := remote.ConnectAll(ctx, etcd.NewResolver(cli, prefix), fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "the pool follows the fleet", poolIs(pool, "s0", "s1", "s2"))

	hole.Blackhole(true)
	testkit.Eventually(t, "the pool drops s0 once its lease expired", poolIs(pool, "s1", "s2"))
	testkit.Eventually(t, "s0's announcement says it lapsed", func() bool {
		return errors.Is(s0.ann.Err(), etcd.ErrLapsed)
	})
	hole.Restore()
	testkit.Eventually(t, "s0 announces itself again", poolIs(pool, "s0", "s1", "s2"))
	// The pool can see the new key before the announcement records its
	// new lease (and a loaded machine can let a 2 s lease lapse again
	// meanwhile): wait for the announcement to say it is current.
	testkit.Eventually(t, "s0's announcement is current again", func() bool { return s0.ann.Err() == nil })

	// A hard stop: the server and its etcd client end without a word.
	s1.stop()
	require.NoError(t, deadCli.Close())
	testkit.Eventually(t, "the pool drops s1 once its lease expired", poolIs(pool, "s0", "s2"))
	assert.Equal(t, []string{"s0", "s2"}, gatherWho(ctx, pool))
}

// TestConnectAnyFailsOverThroughEtcd keeps callers making a
// non-idempotent call through a ConnectAny client on the etcd resolver
// while the server it uses withdraws and drains, twice: no call fails, the
// client moves to a server still announced, and every call ran exactly
// once.
func TestConnectAnyFailsOverThroughEtcd(t *testing.T) {
	leakcheck.Check(t)
	e := startEtcd(t)
	cli := etcdClient(t, e.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	fleet := map[string]*member{}
	for _, name := range []string{"s0", "s1", "s2"} {
		fleet[name] = serve(t, name)
		fleet[name].announce(t, cli)
	}
	cl, err := remote.ConnectAny(ctx, etcd.NewResolver(cli, prefix), fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	ref, err := cl.Registry().Lookup(ctx, "fleet")
	require.NoError(t, err)

	var ok atomic.Int64
	var failed []error
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := broker.Call[int64](ctx, ref, "Bump"); err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
					return
				}
				ok.Add(1)
			}
		}()
	}

	for range 2 {
		before := ok.Load()
		testkit.Eventually(t, "calls go through", func() bool { return ok.Load() > before+20 })
		ep, connected := cl.Endpoint()
		require.True(t, connected)
		old := fleet[ep.ID]
		require.NoError(t, old.ann.Withdraw(ctx))
		require.NoError(t, old.srv.Shutdown(ctx))
		testkit.Eventually(t, "the client moves to another server", func() bool {
			now, connected := cl.Endpoint()
			return connected && now.ID != ep.ID
		})
		who, err := broker.Call[string](ctx, ref, "Who")
		require.NoError(t, err)
		assert.NotEqual(t, ep.ID, who)
	}
	close(stop)
	wg.Wait()
	require.Empty(t, failed, "no call failed")
	var ran int64
	for _, m := range fleet {
		ran += m.rep.bumps.Load()
	}
	assert.Equal(t, ok.Load(), ran, "every call ran exactly once")
}

// TestResolverLeavesOutBadEntries puts values that are not endpoints under
// the prefix: the resolver names the good ones and logs each bad key.
func TestResolverLeavesOutBadEntries(t *testing.T) {
	leakcheck.Check(t)
	e := startEtcd(t)
	cli := etcdClient(t, e.Addr())
	ctx := testkit.Ctx(t, time.Minute)
	s0 := serve(t, "s0")
	s0.announce(t, cli)
	_, err := cli.Put(ctx, prefix+"junk", "not json")
	require.NoError(t, err)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	pool, err := remote.ConnectAll(ctx, etcd.NewResolver(cli, prefix, etcd.WithLogger(logger)))
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "the pool follows s0", poolIs(pool, "s0"))

	_, err = cli.Put(ctx, prefix+"noaddr", `{"network":"tcp"}`)
	require.NoError(t, err)
	testkit.Eventually(t, "the second bad entry is logged", func() bool {
		return bytes.Contains(logs.Bytes(), []byte("noaddr"))
	})
	assert.Contains(t, logs.String(), "junk")
	assert.True(t, poolIs(pool, "s0")(), "bad entries are left out")
}

// TestMistakesAreReported gives Announce and NewResolver what they cannot
// use: each says so with broker.ErrInvalidOption.
func TestMistakesAreReported(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	ep := remote.Endpoint{Network: "tcp", Addr: "127.0.0.1:1"}
	_, err := etcd.Announce(ctx, nil, prefix, ep)
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	e := startEtcd(t)
	cli := etcdClient(t, e.Addr())
	_, err = etcd.Announce(ctx, cli, prefix, remote.Endpoint{Addr: "x:1"})
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	_, err = etcd.Announce(ctx, cli, prefix, ep, etcd.WithTTL(0))
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	err = etcd.NewResolver(nil, prefix).Resolve(ctx, func([]remote.Endpoint, error) {})
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
	err = etcd.NewResolver(cli, prefix, etcd.WithLogger(nil)).Resolve(ctx, func([]remote.Endpoint, error) {})
	assert.ErrorIs(t, err, broker.ErrInvalidOption)
}

// syncBuffer is a bytes.Buffer safe for a logger and the test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written.
func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// String returns what was written.
func (b *syncBuffer) String() string { return string(b.Bytes()) }

// TestResolverReportsUnreachableEtcd follows a prefix through a link to
// etcd that drops every byte: the pool says why it knows no server, an
// error matching remote.ErrResolver, and once the link is back it follows
// the fleet and the error clears.
func TestResolverReportsUnreachableEtcd(t *testing.T) {
	leakcheck.Check(t)
	e := startEtcd(t)
	ctx := testkit.Ctx(t, time.Minute)
	s0 := serve(t, "s0")
	s0.announce(t, etcdClient(t, e.Addr()))
	cli, hole := proxiedClient(t, e.Addr())
	hole.Blackhole(true)

	r := etcd.NewResolver(cli, prefix, etcd.WithRequestTimeout(300*time.Millisecond), etcd.WithLogger(slog.New(slog.DiscardHandler)))
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "the pool reports the resolver's failure", func() bool {
		return errors.Is(pool.Err(), remote.ErrResolver)
	})
	assert.Empty(t, pool.Endpoints())

	hole.Restore()
	testkit.Eventually(t, "the pool follows s0 once etcd answers", poolIs(pool, "s0"))
	assert.NoError(t, pool.Err())
}
