package acceptance

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// server is one process publishing a registry with a store under
// "inventory", as DESIGN.md shows: NewServer, go Serve(ln), Close.
type server struct {
	srv    *broker.Server
	addr   string
	served chan error
}

// serve starts a server publishing a store called name.
func serve(t *testing.T, name string) *server {
	reg := registry.New()
	require.NoError(t, reg.Register("inventory", NewStore(name)))
	return serveRoot(t, reg)
}

// serveRoot starts a server publishing root on a loopback port.
func serveRoot(t *testing.T, root any) *server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{srv: broker.NewServer(root), addr: ln.Addr().String(), served: make(chan error, 1)}
	go func() { s.served <- s.srv.Serve(ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		assert.ErrorIs(t, <-s.served, broker.ErrServerClosed)
	})
	return s
}

// TestTheContractAsAUserReadsIt is the program a user writes from
// DESIGN.md, with a check after each step on the promise it relies on.
func TestTheContractAsAUserReadsIt(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := map[string]*server{"a": serve(t, "a"), "b": serve(t, "b")}

	// A client of the fleet: "returns at once; dials in the background".
	r := remote.Static(remote.Endpoint{Network: "tcp", Addr: servers["a"].addr}, remote.Endpoint{Network: "tcp", Addr: servers["b"].addr})
	// The transitions are counted from before the first dial (WithWatch):
	// "a handler connected after Connect returned may miss" the first
	// link's Connected, which may still be running after the first call.
	var downs, ups atomic.Int32
	watch := remote.WithWatch(func(cl *remote.Client) {
		cl.Disconnected.Connect(func(error) { downs.Add(1) })
		cl.Connected.Connect(func(*broker.Conn) { ups.Add(1) })
	})
	cl, err := remote.ConnectAny(ctx, r, watch)
	require.NoError(t, err)
	defer cl.Close()

	// Typed references: "a call made while a dial attempt is in progress
	// (the first one included) waits for that attempt".
	inv, err := registry.LookupAs[Inventory](ctx, cl.Registry(), "inventory")
	require.NoError(t, err)
	first, err := inv.Where(ctx)
	require.NoError(t, err)
	require.NoError(t, inv.Add(ctx, "bolts", 3))
	n, err := inv.Count(ctx, "bolts")
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	// Errors cross the wire: errors.Is holds for a registered error, and
	// CodeOf classifies local and remote errors alike.
	_, err = inv.Count(ctx, "nuts")
	require.ErrorIs(t, err, ErrUnknownItem)
	assert.Equal(t, broker.CodeOf(ErrUnknownItem), broker.CodeOf(err))
	assert.Contains(t, err.Error(), `"nuts"`)
	// A wrong type is "a clear error to the caller, never a panic".
	caller := inv.(remoteable.Stub).TetherCaller()
	err = caller.Call(ctx, "Count", &n, 42)
	require.ErrorIs(t, err, broker.ErrBadArguments)
	assert.Equal(t, broker.InvalidArgument, broker.CodeOf(err))
	err = caller.Call(ctx, "Counts", &n, "bolts")
	require.ErrorIs(t, err, broker.ErrUnknownMethod)
	assert.Equal(t, broker.Unimplemented, broker.CodeOf(err))

	// Drain the server in use while calls go on: "refuse new calls with a
	// typed retryable error ... a remote.Client told 'going away' fails
	// over", and "a call that may have reached the server is never
	// repeated silently": no call fails, none runs twice.
	var failed []error
	var mu sync.Mutex
	var calls sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		calls.Add(1)
		go func() {
			defer calls.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := inv.Add(ctx, "washers", 1); err != nil {
					mu.Lock()
					failed = append(failed, err)
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, servers[first].srv.Shutdown(ctx))
	after, err := inv.Where(ctx)
	require.NoError(t, err, "the typed reference works on the other server")
	assert.NotEqual(t, first, after)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	calls.Wait()
	assert.Empty(t, failed, "no call failed across the drain")
	// The first link, and the one after the drain.
	assert.Eventually(t, func() bool { return ups.Load() == 2 }, 30*time.Second, 5*time.Millisecond)
	assert.Equal(t, int32(1), downs.Load(), "Disconnected fires once per transition")
	assert.Equal(t, int32(2), ups.Load(), "Connected fires once per transition")
	assert.Equal(t, remote.Connected, cl.State())

	// Mirrors through a relay: "a relay publishes what it sees upstream,
	// unchanged in shape", and a mirror "stays in sync, fires the same
	// local signals as the original".
	up, err := remote.Connect(ctx, "tcp", servers[after].addr)
	require.NoError(t, err)
	defer up.Close()
	relay := serveRoot(t, up.Registry())
	down, err := remote.Connect(ctx, "tcp", relay.addr)
	require.NoError(t, err)
	defer down.Close()
	viaRelay, err := registry.LookupAs[Inventory](ctx, down.Registry(), "inventory")
	require.NoError(t, err)
	view, err := viaRelay.Stock(ctx)
	require.NoError(t, err)
	changes := make(chan cache.Change[string, int], 64)
	view.Changes().Connect(func(c cache.Change[string, int]) { changes <- c })
	start := view.Version()
	for i := 1; i <= 3; i++ {
		require.NoError(t, inv.Add(ctx, "gears", 1), "written through the first client")
	}
	last := start
	for i := 1; i <= 3; i++ {
		select {
		case c := <-changes:
			assert.Equal(t, "gears", c.Key)
			assert.Equal(t, i, c.Value)
			assert.Equal(t, last+1, c.Version, "versions increase by one per change")
			last = c.Version
		case <-ctx.Done():
			t.Fatal("the mirror through the relay saw no change")
		}
	}
	got, ok := view.Get("gears")
	assert.True(t, ok)
	assert.Equal(t, 3, got)
	assert.False(t, view.Stale())
	assert.NoError(t, view.Err())
	wash, err := viaRelay.Count(ctx, "washers")
	require.NoError(t, err)
	wantWash, err := inv.Count(ctx, "washers")
	require.NoError(t, err)
	assert.Equal(t, wantWash, wash, "the relay's caller reads the same store")
	c, ok := view.(io.Closer)
	require.True(t, ok, "a mirror received as a View closes through io.Closer")
	require.NoError(t, c.Close())
	assert.True(t, view.Stale(), "a closed mirror reports Stale")
}
