package cache_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// collected runs the garbage collector until cond holds, failing the test
// after a bounded wait. It checks that something happens, not how fast.
func collected(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, what, func() bool {
		if cond() {
			return true
		}
		runtime.GC()
		return false
	})
}

// gcRounds runs the garbage collector a few times, letting cleanups run.
func gcRounds() {
	for range 5 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
}

// mirrorAndForget obtains the model as a mirror through ref and drops it.
//
//go:noinline
func mirrorAndForget(t testing.TB, ref remoteable.Caller, method string) {
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(testkit.Ctx(t, 90*time.Second), method, &mir))
	require.NotNil(t, mir)
}

// valueMirrorAndForget obtains the value as a mirror through ref and
// drops it.
//
//go:noinline
func valueMirrorAndForget(t testing.TB, ref remoteable.Caller) {
	var vm *cache.ValueMirror[int]
	require.NoError(t, ref.Call(testkit.Ctx(t, 90*time.Second), "Counter", &vm))
	require.NotNil(t, vm)
}

// TestUnreachableMirrorIsReleased: a mirror nobody holds is collected and
// its subscription released, so the model drops the subscriber, as a
// reference nobody holds is released. Through a bare reference and through
// a lasting client, for a Map and a Value.
func TestUnreachableMirrorIsReleased(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	s := startServer(t, st)
	_, ref := dialStore(t, s)

	mirrorAndForget(t, ref, "Model")
	require.Equal(t, 1, st.m.Subscribers())
	collected(t, "the bare mirror's subscription is released", func() bool { return st.m.Subscribers() == 0 })

	valueMirrorAndForget(t, ref)
	require.Equal(t, 1, cache.ValueSubscribers(st.v))
	collected(t, "the value mirror's subscription is released", func() bool { return cache.ValueSubscribers(st.v) == 0 })

	cl := connect(t, s.addr)
	rref, err := cl.Registry().Lookup(testkit.Ctx(t, 90*time.Second), "store")
	require.NoError(t, err)
	mirrorAndForget(t, rref, "Model")
	require.Equal(t, 1, st.m.Subscribers())
	collected(t, "the lasting mirror's subscription is released", func() bool { return st.m.Subscribers() == 0 })
	testkit.Eventually(t, "the server holds no observer", func() bool { return s.srv.Stats().Observers == 0 })
}

// TestReferencedMirrorKeepsFollowing: collections do not touch a mirror
// its user still holds; it keeps following, and fires its signals.
func TestReferencedMirrorKeepsFollowing(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	_, ref := dialStore(t, startServer(t, st))
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(testkit.Ctx(t, 90*time.Second), "Model", &mir))
	var mu sync.Mutex
	var seen []int
	mir.Changed.Connect(func(c cache.Change[string, Item]) {
		mu.Lock()
		seen = append(seen, c.Value.Count)
		mu.Unlock()
	})
	for i := range 5 {
		gcRounds()
		require.NoError(t, st.m.Set("k", Item{Count: i}))
	}
	gcRounds()
	require.Equal(t, 1, st.m.Subscribers(), "the held mirror is still subscribed")
	testkit.Eventually(t, "the mirror saw every change", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 5
	})
	require.Equal(t, []int{0, 1, 2, 3, 4}, seen)
	got, _ := mir.Get("k")
	require.Equal(t, 4, got.Count)
	runtime.KeepAlive(mir)
	require.NoError(t, mir.Close())
}

// TestUnreachableMirrorIsReleasedThroughARelay: a client's mirror that
// nobody holds is released at the relay, and the relay, serving nobody
// now, lets go of its upstream subscription.
func TestUnreachableMirrorIsReleasedThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	c := startChain(t)
	require.NoError(t, c.st.m.Set("a", Item{Count: 1}))
	cl := connect(t, c.down.Addr())
	ref, err := cl.Registry().Lookup(testkit.Ctx(t, 90*time.Second), "store")
	require.NoError(t, err)
	mirrorAndForget(t, ref, "Model")
	require.Equal(t, 1, c.st.m.Subscribers())
	collected(t, "the relay's upstream subscription is released", func() bool { return c.st.m.Subscribers() == 0 })
}

// handout is a manager that hands out a mirror it does not keep: once
// handed out, only the peers it went to hold it.
type handout struct {
	remoteable.Referenceable
	mu     sync.Mutex
	mir    *cache.Mirror[string, Item]
	handed weak.Pointer[cache.Mirror[string, Item]]
}

// Model hands the mirror out once.
func (h *handout) Model(ctx context.Context) (*cache.Mirror[string, Item], error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.mir
	h.mir = nil
	if m == nil {
		return nil, remoteable.ErrAccessDenied
	}
	return m, nil
}

// IsMine reports whether the mirror it was given is the one it handed
// out, which it knows only weakly.
func (h *handout) IsMine(ctx context.Context, m *cache.Mirror[string, Item]) (bool, error) {
	return m != nil && m == h.handed.Value(), nil
}

// serveManager publishes obj under name and returns the server's address.
func serveManager(t testing.TB, name string, obj any) string {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register(name, obj))
	_, addr := brokertest.Serve(t, reg)
	return addr
}

// startHandout makes the middle of server → handout → client: a mirror of
// the store's model, handed out by a manager that does not keep it. It
// returns the address of the handout's server.
//
//go:noinline
func startHandout(t testing.TB, st *store) string {
	up := startServer(t, st)
	conn, err := broker.Dial(testkit.Ctx(t, 90*time.Second), "tcp", up.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	sref, err := broker.Call[*broker.Ref](testkit.Ctx(t, 90*time.Second), conn.Root(), "Lookup", "store")
	require.NoError(t, err)
	h := &handout{}
	require.NoError(t, sref.Call(testkit.Ctx(t, 90*time.Second), "Model", &h.mir))
	h.handed = weak.Make(h.mir)
	return serveManager(t, "handout", h)
}

// TestRepublishedMirrorLivesWhileServedDownstream: a mirror passed on to a
// peer is not collected while that peer holds it, even when nothing in its
// own process does; once the peer lets go it is collected, and the model
// upstream drops it.
func TestRepublishedMirrorLivesWhileServedDownstream(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	addr := startHandout(t, st)
	conn, err := broker.Dial(testkit.Ctx(t, 90*time.Second), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	href, err := broker.Call[*broker.Ref](testkit.Ctx(t, 90*time.Second), conn.Root(), "Lookup", "handout")
	require.NoError(t, err)
	var down *cache.Mirror[string, Item]
	require.NoError(t, href.Call(testkit.Ctx(t, 90*time.Second), "Model", &down))

	gcRounds()
	require.Equal(t, 1, st.m.Subscribers(), "the handed-out mirror still follows the model")
	for i := range 10 {
		require.NoError(t, st.m.Set("a", Item{Count: i + 2}))
		gcRounds()
	}
	testkit.Eventually(t, "the change reaches the client through the handed-out mirror", func() bool {
		v, _ := down.Get("a")
		return v.Count == 11
	})
	require.Equal(t, 1, st.m.Subscribers())

	require.NoError(t, down.Close())
	collected(t, "the handed-out mirror is collected once nobody holds it", func() bool { return st.m.Subscribers() == 0 })
}

// IsMineAny reports whether what it was given, received into an any, is the
// store's own model.
func (s *store) IsMineAny(ctx context.Context, x any) (bool, error) { return x == any(s.m), nil }

// IsMyCounter reports whether the value it was given is the store's own.
func (s *store) IsMyCounter(ctx context.Context, v *cache.Value[int]) (bool, error) {
	return v == s.v, nil
}

// Peek reads key from a mirror it was given, which it closes.
func (s *store) Peek(ctx context.Context, mir *cache.Mirror[string, Item], key string) (int, error) {
	defer mir.Close()
	v, _ := mir.Get(key)
	return v.Count, nil
}

// TestMirrorComingHomeIsTheModel: a mirror passed back to the process that
// owns its model arrives there as the model itself, into the model's type
// or an any; a ValueMirror as the Value. A parameter of the mirror's type
// cannot take the model: that is a clear error naming both types.
func TestMirrorComingHomeIsTheModel(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 3}))
	_, ref := dialStore(t, startServer(t, st))
	ctx := testkit.Ctx(t, 90*time.Second)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(ctx, "Model", &mir))

	var same bool
	require.NoError(t, ref.Call(ctx, "IsMine", &same, mir))
	require.True(t, same, "a *cache.Map parameter gets the model itself")
	same = false
	require.NoError(t, ref.Call(ctx, "IsMineAny", &same, mir))
	require.True(t, same, "an any parameter gets the model itself")
	require.Equal(t, 1, st.m.Subscribers(), "sending the mirror home made no mirror there")

	err := ref.Call(ctx, "Peek", nil, mir, "a")
	t.Log(err)
	require.ErrorIs(t, err, broker.ErrBadArguments)
	require.Contains(t, err.Error(), "*cache.Map[string,github.com/tether-go/tether/cache_test.Item]")
	require.Contains(t, err.Error(), "*cache.Mirror[string,github.com/tether-go/tether/cache_test.Item]")

	var vm *cache.ValueMirror[int]
	require.NoError(t, ref.Call(ctx, "Counter", &vm))
	same = false
	require.NoError(t, ref.Call(ctx, "IsMyCounter", &same, vm))
	require.True(t, same, "a ValueMirror comes home as the Value")

	// The mirror still follows the model.
	require.NoError(t, st.m.Set("a", Item{Count: 4}))
	testkit.Eventually(t, "the mirror follows", func() bool { v, _ := mir.Get("a"); return v.Count == 4 })
	require.NoError(t, mir.Close())
	require.NoError(t, vm.Close())
}

// TestMirrorComingHomeThroughARelay: a client's mirror passed to a method
// upstream of a relay arrives at the model's owner as the model: at the
// relay it is the relay's own mirror, which goes on home.
func TestMirrorComingHomeThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	c := startChain(t)
	require.NoError(t, c.st.m.Set("a", Item{Count: 1}))
	cl := connect(t, c.down.Addr())
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := cl.Registry().Lookup(ctx, "store")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	var same bool
	require.NoError(t, ref.Call(ctx, "IsMine", &same, mir))
	require.True(t, same, "the origin gets its own model")
	same = false
	require.NoError(t, ref.Call(ctx, "IsMineAny", &same, mir))
	require.True(t, same)
	require.Equal(t, 1, c.st.m.Subscribers(), "still one subscription upstream")
	require.NoError(t, mir.Close())
}

// TestMirrorComingHomeToATypedRelay: a client's mirror of a mirror that a
// process handed out arrives at that process as its own mirror.
func TestMirrorComingHomeToATypedRelay(t *testing.T) {
	leakcheck.Check(t)
	st := newStore()
	addr := startHandout(t, st)
	conn, err := broker.Dial(testkit.Ctx(t, 90*time.Second), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	ctx := testkit.Ctx(t, 90*time.Second)
	href, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "handout")
	require.NoError(t, err)
	var down *cache.Mirror[string, Item]
	require.NoError(t, href.Call(ctx, "Model", &down))
	var same bool
	require.NoError(t, href.Call(ctx, "IsMine", &same, down))
	require.True(t, same, "the handout gets the mirror it handed out")
	require.NoError(t, down.Close())
}

// TestMirrorToAThirdPartyIsAMirror: a mirror passed to a process other than
// its model's owner still arrives as a mirror there, which follows it.
func TestMirrorToAThirdPartyIsAMirror(t *testing.T) {
	leakcheck.Check(t)
	a, b := newStore(), newStore()
	require.NoError(t, a.m.Set("a", Item{Count: 5}))
	_, aref := dialStore(t, startServer(t, a))
	_, bref := dialStore(t, startServer(t, b))
	ctx := testkit.Ctx(t, 90*time.Second)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, aref.Call(ctx, "Model", &mir))
	var got int
	require.NoError(t, bref.Call(ctx, "Peek", &got, mir, "a"))
	require.Equal(t, 5, got)
	var same bool
	err := bref.Call(ctx, "IsMine", &same, mir)
	require.ErrorIs(t, err, broker.ErrBadArguments, "b cannot take a's model as its own")
	testkit.Eventually(t, "b's mirror is dropped", func() bool { return mir.Subscribers() == 0 })
	require.NoError(t, mir.Close())
}

// mirrorKeeper holds a mirror of a caller's model and gives it back.
type mirrorKeeper struct {
	remoteable.Referenceable
	mu  sync.Mutex
	mir *cache.Mirror[string, int]
}

// Keep holds on to the caller's model, as a mirror.
func (k *mirrorKeeper) Keep(ctx context.Context, mir *cache.Mirror[string, int]) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mir = mir
	return nil
}

// Give returns the mirror it keeps.
func (k *mirrorKeeper) Give(ctx context.Context) (*cache.Mirror[string, int], error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mir, nil
}

// TestMirrorReturnedHomeIsTheModel: a mirror a handler returns to the
// process that owns its model is that model for the caller.
func TestMirrorReturnedHomeIsTheModel(t *testing.T) {
	leakcheck.Check(t)
	k := &mirrorKeeper{}
	addr := serveManager(t, "keeper", k)
	conn, err := broker.Dial(testkit.Ctx(t, 90*time.Second), "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	ctx := testkit.Ctx(t, 90*time.Second)
	ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "keeper")
	require.NoError(t, err)
	mine := cache.NewMap[string, int]()
	require.NoError(t, mine.Set("x", 1))
	require.NoError(t, ref.Call(ctx, "Keep", nil, mine))
	require.Equal(t, 1, mine.Subscribers())

	var back *cache.Map[string, int]
	require.NoError(t, ref.Call(ctx, "Give", &back))
	require.Same(t, mine, back, "the caller gets its own map back")
	var anyBack any
	require.NoError(t, ref.Call(ctx, "Give", &anyBack))
	require.Same(t, mine, anyBack.(*cache.Map[string, int]))

	var wrong *cache.Mirror[string, int]
	err = ref.Call(ctx, "Give", &wrong)
	require.ErrorIs(t, err, broker.ErrBadReply, "a mirror reply cannot hold the caller's own model")

	k.mu.Lock()
	require.NoError(t, k.mir.Close())
	k.mu.Unlock()
	testkit.Eventually(t, "the keeper's mirror is dropped", func() bool { return mine.Subscribers() == 0 })
}
