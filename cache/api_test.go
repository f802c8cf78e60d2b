package cache_test

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

func dialStore(t *testing.T, s *server) (*broker.Conn, *broker.Ref) {
	ctx := testkit.Ctx(t, 90*time.Second)
	conn, err := broker.Dial(ctx, "tcp", s.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "store")
	require.NoError(t, err)
	return conn, ref
}

func TestValueMirror(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	require.NoError(t, st.v.Set(41))
	_, ref := dialStore(t, startServer(t, st))
	var vm *cache.ValueMirror[int]
	require.NoError(t, ref.Call(ctx, "Counter", &vm))
	defer vm.Close()
	require.Equal(t, 41, vm.Get())
	require.Equal(t, st.v.Version(), vm.Version())
	got := make(chan cache.Change[struct{}, int], 1)
	vm.Changed.Connect(func(c cache.Change[struct{}, int]) { got <- c })
	require.NoError(t, st.v.Set(42))
	c := <-got
	require.Equal(t, 42, c.Value)
	require.Equal(t, st.v.Version(), c.Version)
	require.Equal(t, 42, vm.Get())
}

func TestMirrorAsArgumentAndModelComingHome(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	_, ref := dialStore(t, startServer(t, st))

	// The client's own model, passed as an argument, is a mirror for the
	// handler, attached before it runs.
	mine := cache.NewMap[string, int]()
	require.NoError(t, mine.Set("x", 7))
	var seen int
	require.NoError(t, ref.Call(ctx, "Watch", &seen, mine))
	require.Equal(t, 7, seen)
	testkit.Eventually(t, "the handler's mirror is dropped", func() bool { return mine.Subscribers() == 0 })

	// The server's model sent back to it is the model itself, not a mirror.
	var feed *broker.Ref
	require.NoError(t, ref.Call(ctx, "Model", &feed))
	require.True(t, feed.Cacheable())
	var same bool
	require.NoError(t, ref.Call(ctx, "IsMine", &same, feed))
	require.True(t, same)
	feed.Release()
}

func TestMirrorOfTheWrongTypeIsAClearError(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	_, ref := dialStore(t, startServer(t, st))
	var wrong *cache.Mirror[int, string]
	err := ref.Call(ctx, "Model", &wrong)
	require.Error(t, err)
	require.Contains(t, err.Error(), "cannot attach mirror")
	require.Contains(t, err.Error(), "cannot decode")
	testkit.Eventually(t, "nothing is left subscribed", func() bool { return st.m.Subscribers() == 0 })

	// A model is not received into a plain struct or a string.
	var s string
	err = ref.Call(ctx, "Model", &s)
	require.ErrorIs(t, err, broker.ErrBadReply)

	// The connection still serves.
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	require.Equal(t, 1, mir.Len())
	require.NoError(t, mir.Close())
}

func TestObserversOfAClosedConnectionAreDropped(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	s := startServer(t, st)
	conn, ref := dialStore(t, s)
	// The mirrors are held, or the collector could release them first.
	var mirrors []*cache.Mirror[string, Item]
	for i := 0; i < 5; i++ {
		var mir *cache.Mirror[string, Item]
		require.NoError(t, ref.Call(ctx, "Model", &mir))
		mirrors = append(mirrors, mir)
	}
	require.Equal(t, 5, st.m.Subscribers())
	require.NoError(t, conn.Close())
	testkit.Eventually(t, "subscriptions of the closed connection dropped", func() bool { return st.m.Subscribers() == 0 })
	runtime.KeepAlive(mirrors)
	require.NoError(t, st.m.Set("after", Item{}))
}

func TestLocalMapEvents(t *testing.T) {
	m := cache.NewMap[string, int]()
	require.Equal(t, uint64(0), m.Version())
	ch := make(chan cache.Change[string, int], 10)
	stop := m.Changed.Connect(func(c cache.Change[string, int]) { ch <- c })
	defer stop()
	require.NoError(t, m.Set("a", 1))
	require.False(t, m.Delete("nope"), "deleting an absent key is not a change")
	require.True(t, m.Delete("a"))
	require.Equal(t, cache.Change[string, int]{Key: "a", Value: 1, Version: 1}, <-ch)
	require.Equal(t, cache.Change[string, int]{Key: "a", Value: 1, Deleted: true, Version: 2}, <-ch)
	require.Equal(t, uint64(2), m.Version())
	require.Error(t, cache.NewMap[string, any]().Set("ch", make(chan int)), "values that cannot travel are refused")
}

// keeper keeps the mirrors it is given, for the mutual-mirroring test.
type keeper struct {
	remoteable.Referenceable
	mu  sync.Mutex
	got *cache.Mirror[string, int]
}

func (k *keeper) Keep(ctx context.Context, m *cache.Mirror[string, int]) error {
	k.mu.Lock()
	k.got = m
	k.mu.Unlock()
	return nil
}

func (k *keeper) Put(ctx context.Context, m *cache.Map[string, int], key string, v int) error {
	return m.Set(key, v)
}

// TestPeersMirroringEachOther: two peers each mirror the other's model
// over one connection while both are written through calls. Replies held
// back for read-your-writes must not wait on each other.
func TestPeersMirroringEachOther(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	kp := &keeper{}
	reg := registry.New()
	require.NoError(t, reg.Register("store", st))
	require.NoError(t, reg.Register("keeper", kp))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()
	conn, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	storeRef, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "store")
	require.NoError(t, err)
	keepRef, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "keeper")
	require.NoError(t, err)

	mine := cache.NewMap[string, int]()
	require.NoError(t, keepRef.Call(ctx, "Keep", nil, mine)) // the server mirrors the client's model
	var theirs *cache.Mirror[string, Item]
	require.NoError(t, storeRef.Call(ctx, "Model", &theirs)) // and the client the server's
	defer theirs.Close()

	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if w == 0 {
					assert.NoError(t, storeRef.Call(ctx, "Put", nil, fmt.Sprint("k", i%20), i))
				} else {
					assert.NoError(t, mine.Set(fmt.Sprint("m", i%20), i))
				}
			}
		}()
	}
	wg.Wait()
	testkit.Eventually(t, "both mirrors converge", func() bool {
		kp.mu.Lock()
		defer kp.mu.Unlock()
		return theirs.Version() == st.m.Version() && kp.got != nil && kp.got.Version() == mine.Version()
	})
	kp.mu.Lock()
	kp.got.Close()
	kp.mu.Unlock()
}

// TestUnsendableEntryMakesTheMirrorStale: a value larger than the
// subscriber accepts cannot be pushed; the mirror learns it (Stale, Err)
// instead of silently freezing, and recovers once the value is gone.
func TestUnsendableEntryMakesTheMirrorStale(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 90*time.Second)
	st := newStore()
	s := startServer(t, st)
	conn, err := broker.Dial(ctx, "tcp", s.addr, broker.WithMaxMessageSize(64<<10))
	require.NoError(t, err)
	defer conn.Close()
	ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "store")
	require.NoError(t, err)
	var mir *cache.Mirror[string, Item]
	require.NoError(t, ref.Call(ctx, "Model", &mir))
	defer mir.Close()

	require.NoError(t, st.m.Set("huge", Item{Name: strings.Repeat("x", 100<<10)}))
	testkit.Eventually(t, "the mirror sees it cannot follow", func() bool { return mir.Stale() && mir.Err() != nil })
	t.Logf("mirror error: %v", mir.Err())
	st.m.Delete("huge")
	require.NoError(t, st.m.Set("small", Item{Count: 1}))
	testkit.Eventually(t, "the mirror is back in sync", func() bool { return !mir.Stale() && mir.Version() == st.m.Version() })
}

// TestDescribeModels: a method returning a model describes its entries'
// key and value types, through a connection and through a relay.
func TestDescribeModels(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, newStore())
	_, ref := dialStore(t, s)
	d, err := ref.Describe(testkit.Ctx(t, 90*time.Second))
	require.NoError(t, err)
	model, ok := d.Method("Model")
	require.True(t, ok)
	require.NotNil(t, model.Result)
	assert.Equal(t, broker.KindCacheable, model.Result.Kind)
	assert.Equal(t, broker.KindString, model.Result.Key.Kind)
	assert.Equal(t, broker.KindCopyable, model.Result.Elem.Kind)
	assert.Equal(t, "cache.test.Item", model.Result.Elem.Name)
	counter, _ := d.Method("Counter")
	assert.Equal(t, broker.KindCacheable, counter.Result.Kind)
	assert.Equal(t, broker.KindStruct, counter.Result.Key.Kind, "a Value's one key is struct{}")
	assert.Equal(t, broker.KindInt, counter.Result.Elem.Kind)
	watch, _ := d.Method("Watch")
	assert.Equal(t, broker.KindCacheable, watch.Params[0].Kind, "a mirror parameter")
	assert.Equal(t, broker.KindInt, watch.Params[0].Elem.Kind)
}

// TestStatsCountObserversAndMirrors: the owner's connection counts the
// mirrors it feeds, the mirror's connection the mirrors it holds, and both
// go back to zero when the mirrors close.
func TestStatsCountObserversAndMirrors(t *testing.T) {
	leakcheck.Check(t)
	s := startServer(t, newStore())
	conn, ref := dialStore(t, s)
	ctx := testkit.Ctx(t, 90*time.Second)
	var mirrors []*cache.Mirror[string, Item]
	for range 3 {
		var m *cache.Mirror[string, Item]
		require.NoError(t, ref.Call(ctx, "Model", &m))
		mirrors = append(mirrors, m)
	}
	testkit.Eventually(t, "three observers", func() bool { return s.srv.Stats().Observers == 3 })
	assert.Equal(t, 3, conn.Stats().Mirrors)
	assert.Equal(t, 0, conn.Stats().Observers)
	assert.Equal(t, 0, s.srv.Stats().Mirrors)
	for _, m := range mirrors {
		require.NoError(t, m.Close())
	}
	testkit.Eventually(t, "observers dropped", func() bool { return s.srv.Stats().Observers == 0 })
	testkit.Eventually(t, "mirrors dropped", func() bool { return conn.Stats().Mirrors == 0 })
}
