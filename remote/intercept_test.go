package remote_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
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

// mdOrigin shows the metadata its calls arrived with, and owns a model.
type mdOrigin struct{ model *cache.Map[string, int] }

// Metadata returns the metadata the call arrived with.
func (o *mdOrigin) Metadata(ctx context.Context) (map[string]string, error) {
	md, _ := broker.IncomingMetadata(ctx)
	return md, nil
}

// Child returns an object by reference, which a relay hands on as its own.
func (o *mdOrigin) Child() (*mdChild, error) { return &mdChild{}, nil }

// Model returns the origin's model.
func (o *mdOrigin) Model() (*cache.Map[string, int], error) { return o.model, nil }

// mdChild is an object returned by reference.
type mdChild struct{ remoteable.Referenceable }

// Metadata returns the metadata the call arrived with.
func (*mdChild) Metadata(ctx context.Context) (map[string]string, error) {
	md, _ := broker.IncomingMetadata(ctx)
	return md, nil
}

// callLog records what interceptors saw.
type callLog struct {
	mu    sync.Mutex
	lines []string
}

// interceptor records "name kind method code" for every call.
func (l *callLog) interceptor(name string) broker.Interceptor {
	return func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		err := next(ctx, call)
		l.mu.Lock()
		l.lines = append(l.lines, fmt.Sprintf("%s %s %s %s", name, call.Kind, call.Method, broker.CodeOf(err)))
		l.mu.Unlock()
		return err
	}
}

// take returns the lines recorded so far and forgets them.
func (l *callLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// has reports whether a line was recorded, without forgetting any.
func (l *callLog) has(line string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, line)
}

// serve runs a server publishing root with opts until the test ends.
func serve(t *testing.T, root any, opts ...broker.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(root, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

// lasting connects a remote.Client with quick retries.
func lasting(t *testing.T, addr string, opts ...remote.Option) *remote.Client {
	t.Helper()
	opts = append([]remote.Option{
		remote.WithBroker(broker.WithDeadPeerTimeout(400 * time.Millisecond)),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}),
		remote.WithDialTimeout(500 * time.Millisecond),
	}, opts...)
	cl, err := remote.Connect(context.Background(), "tcp", addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestMetadataCrossesARelayUnchanged(t *testing.T) {
	leakcheck.Check(t)
	var log callLog
	reg := registry.New()
	require.NoError(t, reg.Register("origin", &mdOrigin{model: cache.NewMap[string, int]()}))
	originAddr := serve(t, reg, broker.WithServerInterceptors(log.interceptor("origin-in")))
	up := lasting(t, originAddr, remote.WithBroker(broker.WithClientInterceptors(log.interceptor("relay-out"))))
	// The relay's own interceptor adds a key on the way: it goes on with
	// what the client sent.
	stamp := func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		return next(broker.AppendToOutgoing(ctx, "relayed-by", "relay"), call)
	}
	relayAddr := serve(t, up.Registry(), broker.WithServerInterceptors(log.interceptor("relay-in"), stamp))
	client := lasting(t, relayAddr, remote.WithBroker(broker.WithClientInterceptors(log.interceptor("client-out"))))
	ctx := testkit.Ctx(t, 30*time.Second)

	origin, err := client.Registry().Lookup(ctx, "origin")
	require.NoError(t, err)
	log.take()
	mctx := broker.AppendToOutgoing(ctx, "request-id", "r-9", "tenant", "acme")
	got, err := broker.Call[map[string]string](mctx, origin, "Metadata")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"request-id": "r-9", "tenant": "acme", "relayed-by": "relay"}, got,
		"the client's metadata reaches the origin through the relay, with what the relay added")
	assert.Equal(t, []string{"origin-in method Metadata ok", "relay-out method Metadata ok",
		"relay-in method Metadata ok", "client-out method Metadata ok"}, log.take(), "every hop's interceptors saw the call")

	var child *remote.Ref // a reference the origin returned, handed on by the relay
	require.NoError(t, origin.Call(ctx, "Child", &child))
	got, err = broker.Call[map[string]string](broker.AppendToOutgoing(ctx, "request-id", "r-10"), child, "Metadata")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"request-id": "r-10", "relayed-by": "relay"}, got, "and through a returned reference")

	got, err = broker.Call[map[string]string](ctx, origin, "Metadata")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"relayed-by": "relay"}, got, "a call without metadata gets only the relay's")
}

func TestInterceptorsSeeSubscriptionsAndResumption(t *testing.T) {
	leakcheck.Check(t)
	var log callLog
	o := &mdOrigin{model: cache.NewMap[string, int]()}
	require.NoError(t, o.model.Set("a", 1))
	reg := registry.New()
	require.NoError(t, reg.Register("origin", o))
	addr := serve(t, reg, broker.WithServerInterceptors(log.interceptor("origin-in")))
	link, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { link.Close() })
	client := lasting(t, link.Addr(), remote.WithBroker(broker.WithClientInterceptors(log.interceptor("client-out"))))
	ctx := testkit.Ctx(t, 30*time.Second)

	origin, err := client.Registry().Lookup(ctx, "origin")
	require.NoError(t, err)
	var mir *cache.Mirror[string, int]
	require.NoError(t, origin.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	require.Eventually(t, func() bool {
		return log.has("origin-in subscribe Subscribe ok") && log.has("client-out subscribe Subscribe ok")
	}, 10*time.Second, 5*time.Millisecond, "both sides see the subscription")
	log.take()

	link.Reset() // the mirror resumes from the version it holds
	require.NoError(t, o.model.Set("b", 2))
	require.Eventually(t, func() bool {
		v, ok := mir.Get("b")
		return ok && v == 2 && !mir.Stale()
	}, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool {
		return log.has("origin-in resume Subscribe ok") && log.has("client-out resume Subscribe ok")
	}, 10*time.Second, 5*time.Millisecond, "both sides see the resumption")
}

// TestInterceptorsSeeSnapshotsAndResumeByToken follows a mirror through a
// relay across real outages (faultnet) of each of its two links. Each
// snapshot is seen once, by the sender's client interceptors and the
// receiver's server interceptors (origin → relay, then relay → client);
// after the relay's upstream link is reset, the origin's server
// interceptors see the relay's mirror present its feed's token
// (resume-by-token, the relay's client interceptors too), then resume,
// with no new snapshot since the origin's log covers the change made
// meanwhile; after the client's link to the relay is reset, the relay's
// server interceptors see the client's mirror resume by its token.
func TestInterceptorsSeeSnapshotsAndResumeByToken(t *testing.T) {
	leakcheck.Check(t)
	var log callLog
	o := &mdOrigin{model: cache.NewMap[string, int]()}
	require.NoError(t, o.model.Set("a", 1))
	reg := registry.New()
	require.NoError(t, reg.Register("origin", o))
	originAddr := serve(t, reg, broker.WithServerInterceptors(log.interceptor("origin-in")),
		broker.WithClientInterceptors(log.interceptor("origin-out")))
	upLink, err := faultnet.New(originAddr)
	require.NoError(t, err)
	t.Cleanup(func() { upLink.Close() })
	up := lasting(t, upLink.Addr(), remote.WithBroker(broker.WithClientInterceptors(log.interceptor("relay-up-out")),
		broker.WithServerInterceptors(log.interceptor("relay-up-in"))))
	relayAddr := serve(t, up.Registry(), broker.WithServerInterceptors(log.interceptor("relay-in")),
		broker.WithClientInterceptors(log.interceptor("relay-out")))
	downLink, err := faultnet.New(relayAddr)
	require.NoError(t, err)
	t.Cleanup(func() { downLink.Close() })
	client := lasting(t, downLink.Addr(), remote.WithBroker(broker.WithClientInterceptors(log.interceptor("client-out")),
		broker.WithServerInterceptors(log.interceptor("client-in"))))
	ctx := testkit.Ctx(t, 30*time.Second)

	origin, err := client.Registry().Lookup(ctx, "origin")
	require.NoError(t, err)
	var mir *cache.Mirror[string, int]
	require.NoError(t, origin.Call(ctx, "Model", &mir))
	t.Cleanup(func() { mir.Close() })
	snapshots := []string{"origin-out snapshot Apply ok", "relay-up-in snapshot Apply ok",
		"relay-out snapshot Apply ok", "client-in snapshot Apply ok"}
	require.Eventually(t, func() bool {
		for _, line := range snapshots {
			if !log.has(line) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "each hop's snapshot is seen by its sender and its receiver")
	assert.ElementsMatch(t, snapshots, only(log.take(), "snapshot"), "once each")

	upLink.Reset() // the relay's mirror resumes from the version it holds
	require.NoError(t, o.model.Set("b", 2))
	testkit.Eventually(t, "the mirror has b", func() bool {
		v, ok := mir.Get("b")
		return ok && v == 2 && !mir.Stale()
	})
	require.Eventually(t, func() bool { return log.has("origin-in resume Subscribe ok") },
		10*time.Second, 5*time.Millisecond, "the origin sees the relay's mirror resume")
	seen := log.take()
	assert.Equal(t, []string{"origin-in resume-by-token tether.feed ok", "origin-in resume Subscribe ok"}, only(only(seen, "origin-in"), "resume"),
		"the origin sees the token presented, then the resumption")
	assert.Contains(t, seen, "relay-up-out resume-by-token tether.feed ok")
	assert.Empty(t, only(seen, "snapshot"), "the origin's log covered the change: no snapshot")

	downLink.Reset() // the client's mirror resumes at the relay
	require.NoError(t, o.model.Set("c", 3))
	testkit.Eventually(t, "the mirror has c", func() bool {
		v, ok := mir.Get("c")
		return ok && v == 3 && !mir.Stale()
	})
	require.Eventually(t, func() bool { return log.has("relay-in resume Subscribe ok") },
		10*time.Second, 5*time.Millisecond, "the relay sees the client's mirror resume")
	seen = log.take()
	assert.Equal(t, []string{"relay-in resume-by-token tether.feed ok", "relay-in resume Subscribe ok"}, only(only(seen, "relay-in"), "resume"),
		"the relay sees the token presented, then the resumption")
	assert.Contains(t, seen, "client-out resume-by-token tether.feed ok")
}

// only returns the lines that contain s.
func only(lines []string, s string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
