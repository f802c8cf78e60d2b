package broker

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// serverConn returns the server side of the only connection to srv.
func serverConn(t *testing.T, srv *Server) *Conn {
	t.Helper()
	var conns []*Conn
	require.Eventually(t, func() bool { conns = srv.Conns(); return len(conns) == 1 }, 5*time.Second, time.Millisecond)
	return conns[0]
}

func TestReferenceComingHomeIsTheOriginalObject(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, newService(), nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		root := cl.Root()

		// The client's own object, sent and returned, is the object itself.
		mine := &listener{}
		var back any
		require.NoError(t, root.Call(ctx, "Identity", &back, mine))
		assert.Same(t, mine, back)
		var backRef *Ref
		require.NoError(t, root.Call(ctx, "Identity", &backRef, mine))
		obj, local := backRef.Local()
		assert.True(t, local)
		assert.Same(t, mine, obj)

		// The server's object, sent back by the client, is the server's object.
		var ctr *Ref
		require.NoError(t, root.Call(ctx, "NewCounter", &ctr))
		isMine, err := Call[bool](ctx, root, "IsMine", ctr)
		require.NoError(t, err)
		assert.True(t, isMine)

		// Receiving the same remote object twice gives two handles to it.
		a, err := Call[*Ref](ctx, root, "Same")
		require.NoError(t, err)
		b, err := Call[*Ref](ctx, root, "Same")
		require.NoError(t, err)
		assert.NotSame(t, a, b)
		assert.True(t, a.Same(b))
		assert.False(t, a.Same(ctr))
		n, err := Call[int](ctx, a, "Inc")
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		n, err = Call[int](ctx, b, "Inc")
		require.NoError(t, err)
		assert.Equal(t, 2, n)
	})
}

func TestReleaseDropsExportWhenLastHolderLetsGo(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc)
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sc := serverConn(t, srv)
	assert.Equal(t, 1, sc.Stats().Exports, "only the root")

	a, err := Call[*Ref](ctx, cl.Root(), "Same")
	require.NoError(t, err)
	b, err := Call[*Ref](ctx, cl.Root(), "Same") // same object: two handles, one export
	require.NoError(t, err)
	assert.Equal(t, 2, sc.Stats().Exports)
	assert.Equal(t, 1, cl.Stats().Imports)

	a.Release()
	a.Release() // idempotent
	err = a.Call(ctx, "Inc", nil)
	assert.ErrorIs(t, err, ErrReleased)
	n, err := Call[int](ctx, b, "Inc")
	require.NoError(t, err, "the other handle is unaffected")
	assert.Equal(t, 1, n)
	assert.Equal(t, 2, sc.Stats().Exports, "still held through b")

	b.Release()
	testkit.Eventually(t, "export dropped after the last release", func() bool { return sc.Stats().Exports == 1 })
	assert.Equal(t, 0, cl.Stats().Imports)

	// Sent again, the object gets a fresh id and works.
	c, err := Call[*Ref](ctx, cl.Root(), "Same")
	require.NoError(t, err)
	assert.False(t, a.Same(c), "ids are never reused")
	n, err = Call[int](ctx, c, "Inc")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	c.Release()
	testkit.Eventually(t, "export dropped", func() bool { return sc.Stats().Exports == 1 })
}

func TestUnreachableReferenceIsReleasedByCleanup(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sc := serverConn(t, srv)
	func() {
		for i := 0; i < 10; i++ {
			r, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
			require.NoError(t, err)
			_ = r
		}
	}()
	assert.Equal(t, 11, sc.Stats().Exports)
	testkit.Eventually(t, "collected references released", func() bool {
		runtime.GC()
		return sc.Stats().Exports == 1
	})
	assert.Equal(t, 0, cl.Stats().Imports)
}

func TestReleaseRacingResendIsCounted(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sc := serverConn(t, srv)

	// Many goroutines fetch the same object and release it at once, so that
	// the server re-sends it while releases are in flight.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				r, err := Call[*Ref](ctx, cl.Root(), "Same")
				if err != nil {
					errs <- err
					return
				}
				if err := r.Call(ctx, "Inc", nil); err != nil {
					errs <- err
					return
				}
				r.Release()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	testkit.Eventually(t, "every reference given back", func() bool { return sc.Stats().Exports == 1 })
	assert.Nil(t, cl.Err(), "no protocol violation along the way")
	assert.Equal(t, 0, cl.Stats().Imports)
}

func TestForgedReferenceIsRefused(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	cl := dial(t, addr)
	forged := &Ref{c: cl, id: 4242}
	err := forged.Call(testkit.Ctx(t, 30*time.Second), "Inc", nil)
	assert.ErrorIs(t, err, ErrUnknownReference)
	var re *RemoteError
	assert.ErrorAs(t, err, &re)
	assert.Nil(t, cl.Err())
}

func TestReferencesDieWithTheirConnection(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc)
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	ctr, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
	require.NoError(t, err)

	// A call in flight when the link dies fails at once with the link error.
	pending := make(chan error, 1)
	go func() {
		_, err := Call[string](ctx, cl.Root(), "Block")
		pending <- err
	}()
	require.Equal(t, "Block", <-svc.started)
	var causes []error
	var mu sync.Mutex
	cl.Disconnected.Connect(func(err error) { mu.Lock(); causes = append(causes, err); mu.Unlock() })
	require.NoError(t, srv.Close())

	err = <-pending
	assert.ErrorIs(t, err, ErrConnectionLost)
	assert.ErrorIs(t, err, ErrDeadReference)
	assert.ErrorIs(t, err, ErrPeerClosed)

	<-cl.Done()
	err = ctr.Call(ctx, "Inc", nil)
	assert.ErrorIs(t, err, ErrDeadReference)
	assert.NotErrorIs(t, err, ErrConnectionLost, "never sent")
	err = cl.Root().Call(ctx, "Add", nil, 1, 2)
	assert.ErrorIs(t, err, ErrDeadReference)
	mu.Lock()
	require.Len(t, causes, 1, "Disconnected fires once")
	assert.ErrorIs(t, causes[0], ErrPeerClosed)
	mu.Unlock()
	assert.ErrorIs(t, cl.Err(), ErrPeerClosed)
}

func TestExportQuota(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithMaxExports(3))
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	var held []*Ref
	for i := 0; i < 2; i++ {
		r, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
		require.NoError(t, err)
		held = append(held, r)
	}
	_, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
	assert.ErrorIs(t, err, ErrTooManyReferences)
	held[0].Release()
	require.Eventually(t, func() bool {
		r, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
		if err == nil {
			held = append(held, r)
		}
		return err == nil
	}, 5*time.Second, 5*time.Millisecond)
}

// subscription plays a model's subscription for the broker's count (the
// cache engine's, internal/feed, implements cacheSubscription the same
// way). It is not empty: pointers to zero-sized values may all be equal,
// and the broker would take every one for the same object.
type subscription struct {
	remoteable.Referenceable
	_ int
}

func (*subscription) CacheSubscription() {}

// publisher hands out subscriptions, and plain objects.
type publisher struct{ remoteable.Referenceable }

func (publisher) Subscribe() (*subscription, error) { return &subscription{}, nil }
func (publisher) NewCounter() (*counter, error)     { return &counter{}, nil }

// TestSubscriptionQuotaBothSides: WithMaxSubscriptions bounds the
// subscriptions each side holds for its peer, on a server and on a
// dialer alike, apart from other exports; the default is
// DefaultMaxSubscriptions.
func TestSubscriptionQuotaBothSides(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	srv, addr := startServer(t, publisher{}, WithMaxSubscriptions(2))
	cl := dial(t, addr, WithMaxSubscriptions(1), WithRoot(publisher{}), WithName("subscriber"))
	var held []*Ref
	for i := 0; i < 2; i++ {
		r, err := Call[*Ref](ctx, cl.Root(), "Subscribe")
		require.NoError(t, err)
		held = append(held, r)
	}
	_, err := Call[*Ref](ctx, cl.Root(), "Subscribe")
	require.ErrorIs(t, err, ErrTooManyReferences)
	assert.ErrorContains(t, err, "2 subscriptions")
	assert.ErrorContains(t, err, "WithMaxSubscriptions")
	r, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
	require.NoError(t, err, "other objects are not subscriptions")
	held = append(held, r)

	sc, err := hpServerConn(srv, "subscriber")
	require.NoError(t, err)
	r, err = Call[*Ref](ctx, sc.Root(), "Subscribe")
	require.NoError(t, err)
	held = append(held, r)
	_, err = Call[*Ref](ctx, sc.Root(), "Subscribe")
	require.ErrorIs(t, err, ErrTooManyReferences, "the dialer's own quota")
	assert.ErrorContains(t, err, "1 subscriptions")

	held[0].Release()
	require.Eventually(t, func() bool {
		r, err := Call[*Ref](ctx, cl.Root(), "Subscribe")
		if err == nil {
			held = append(held, r)
		}
		return err == nil
	}, 5*time.Second, 5*time.Millisecond, "a released subscription makes room")

	o, err := buildOptions(bothSides, nil)
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxSubscriptions, o.maxSubscriptions)
	assert.Equal(t, 1024, DefaultMaxSubscriptions)
	_, err = buildOptions(serverSide, []Option{WithMaxSubscriptions(-1)})
	assert.Error(t, err)
}
