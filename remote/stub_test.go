package remote

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// The interfaces of these tests, with stubs written by hand as tether gen
// writes them.
type (
	Desk interface {
		Get(ctx context.Context, name string) (string, error)
		Login(ctx context.Context, name string) (Badge, error)
		Watch(ctx context.Context, b Bell) error
		Check(ctx context.Context, b Badge) (string, error)
	}
	Badge interface {
		Owner(ctx context.Context) (string, error)
	}
	Bell interface {
		Ring(ctx context.Context, msg string) error
	}
)

type deskStub struct{ c remoteable.Caller }

func (s *deskStub) TetherCaller() remoteable.Caller { return s.c }
func (s *deskStub) Get(ctx context.Context, name string) (string, error) {
	var r string
	err := s.c.Call(ctx, "Get", &r, name)
	return r, err
}
func (s *deskStub) Login(ctx context.Context, name string) (Badge, error) {
	var r Badge
	err := s.c.Call(ctx, "Login", &r, name)
	return r, err
}
func (s *deskStub) Watch(ctx context.Context, b Bell) error { return s.c.Call(ctx, "Watch", nil, b) }
func (s *deskStub) Check(ctx context.Context, b Badge) (string, error) {
	var r string
	err := s.c.Call(ctx, "Check", &r, b)
	return r, err
}

type badgeStub struct{ c remoteable.Caller }

func (s *badgeStub) TetherCaller() remoteable.Caller { return s.c }
func (s *badgeStub) Owner(ctx context.Context) (string, error) {
	var r string
	err := s.c.Call(ctx, "Owner", &r)
	return r, err
}

type bellStub struct{ c remoteable.Caller }

func (s *bellStub) TetherCaller() remoteable.Caller { return s.c }
func (s *bellStub) Ring(ctx context.Context, msg string) error {
	return s.c.Call(ctx, "Ring", nil, msg)
}

func init() {
	remoteable.RegisterStub[Desk](func(c remoteable.Caller) Desk { return &deskStub{c} })
	remoteable.RegisterStub[Badge](func(c remoteable.Caller) Badge { return &badgeStub{c} })
	remoteable.RegisterStub[Bell](func(c remoteable.Caller) Bell { return &bellStub{c} })
}

// desk is the server's manager; Login is declared idempotent, so a badge
// obtained through it is obtained again after an outage.
type desk struct{ remoteable.Referenceable }

func (*desk) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}, "Login": {Idempotent: true}}
}
func (*desk) Get(_ context.Context, name string) (string, error) { return "desk:" + name, nil }
func (*desk) Login(_ context.Context, name string) (Badge, error) {
	return &badge{owner: name}, nil
}
func (*desk) Watch(ctx context.Context, b Bell) error {
	if _, ok := b.(*bellStub); !ok {
		return fmt.Errorf("the bell arrived as a %T", b)
	}
	return b.Ring(ctx, "ding")
}
func (*desk) Check(_ context.Context, b Badge) (string, error) {
	if own, ok := b.(*badge); ok {
		return "own badge of " + own.owner, nil
	}
	return fmt.Sprintf("a %T", b), nil
}

// Held carries a badge in a struct field.
type Held struct{ B Badge }

// Homes says, for badges nested in a slice, a map and a struct field,
// which came home as the server's own badges.
func (*desk) Homes(_ context.Context, list []Badge, byName map[string]Badge, h Held) ([]string, error) {
	var out []string
	say := func(b Badge) {
		if own, ok := b.(*badge); ok {
			out = append(out, "own "+own.owner)
		} else {
			out = append(out, fmt.Sprintf("a %T", b))
		}
	}
	for _, b := range list {
		say(b)
	}
	say(byName["k"])
	say(h.B)
	return out, nil
}

// Show reads a badge that may live in another process.
func (*desk) Show(ctx context.Context, b Badge) (string, error) { return b.Owner(ctx) }

type badge struct {
	remoteable.Referenceable
	owner string
}

func (b *badge) Owner(context.Context) (string, error) { return b.owner, nil }

// bell is a client's object the server rings.
type bell struct {
	remoteable.Referenceable
	rang chan string
}

func (b *bell) Ring(_ context.Context, msg string) error {
	b.rang <- msg
	return nil
}

// deskChain is server → (fault proxy) → relay → client, the server
// publishing a desk; direct is a client of the server through the proxy.
type deskChain struct {
	link   *serverLink
	direct *Client
	client *Client // through the relay
}

// serverLink is the fault proxy in front of the server, and the relay's
// client of the server through it.
type serverLink struct {
	proxy interface {
		Addr() string
		Refuse(bool)
		Reset()
		Restore()
	}
	up *Client
}

func startDeskChain(t *testing.T) *deskChain {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("desk", &desk{}))
	srv := startServer(t, "127.0.0.1:0", reg)
	p := proxyTo(t, srv.addr)
	up := connect(t, p.Addr())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	relay := broker.NewServer(up.Registry())
	done := make(chan error, 1)
	go func() { done <- relay.Serve(ln) }()
	t.Cleanup(func() { relay.Close(); <-done })
	return &deskChain{
		link:   &serverLink{proxy: p, up: up},
		direct: connect(t, p.Addr()),
		client: connect(t, ln.Addr().String()),
	}
}

// cut takes the server's link down, refusing new connections, until the
// returned function restores it; the relay's and the direct client's
// links both go through it.
func (ch *deskChain) cut(t *testing.T) (restore func()) {
	ch.link.proxy.Refuse(true)
	ch.link.proxy.Reset()
	waitState(t, ch.link.up, Waiting)
	waitState(t, ch.direct, Waiting)
	return ch.link.proxy.Restore
}

// TestTypedReferencesLastAcrossOutages: a typed reference over a
// *remote.Ref, and a typed result obtained through it, keep working after
// the link is cut and restored, directly and through a relay; a typed
// callback reaches the client's object, and a stub sent home arrives as
// the server's own object.
func TestTypedReferencesLastAcrossOutages(t *testing.T) {
	leakcheck.Check(t)
	ch := startDeskChain(t)
	ctx := testkit.Ctx(t, time.Minute)
	paths := []struct {
		name string
		cl   *Client
		home string // what Check says of a badge sent back
	}{
		{"direct", ch.direct, "own badge of alice"},
		{"relay", ch.client, "own badge of alice"},
	}
	type held struct {
		d Desk
		b Badge
	}
	var refs []held
	for _, p := range paths {
		r, err := p.cl.Registry().Lookup(ctx, "desk")
		require.NoError(t, err, p.name)
		d, err := remoteable.As[Desk](r)
		require.NoError(t, err, p.name)
		b, err := d.Login(ctx, "alice")
		require.NoError(t, err, p.name)
		require.IsType(t, &badgeStub{}, b, p.name)
		require.IsType(t, &Ref{}, b.(remoteable.Stub).TetherCaller(), "%s: the stub wraps a lasting reference", p.name)
		refs = append(refs, held{d, b})

		bl := &bell{rang: make(chan string, 1)}
		require.NoError(t, d.Watch(ctx, bl), p.name)
		assert.Equal(t, "ding", <-bl.rang, p.name)
		checked, err := d.Check(ctx, b)
		require.NoError(t, err, p.name)
		assert.Equal(t, p.home, checked, p.name)
	}

	for cut := 0; cut < 2; cut++ {
		restore := ch.cut(t)
		_, err := refs[0].d.Get(ctx, "during")
		require.ErrorIs(t, err, ErrDisconnected, "the typed call fails fast while the client waits out a backoff")
		// A call that waits for the link (WaitForLink travels in ctx)
		// succeeds once the link is back.
		waited := make(chan error, 1)
		go func() {
			_, err := refs[0].d.Get(WaitForLink(ctx), "waited")
			waited <- err
		}()
		restore()
		require.NoError(t, <-waited)
		require.NoError(t, ch.link.up.WaitConnected(ctx), "the relay's link is back")
		for i, p := range paths {
			got, err := refs[i].d.Get(ctx, "after")
			require.NoError(t, err, "%s: the typed reference obtained before the cut works after it", p.name)
			assert.Equal(t, "desk:after", got)
			owner, err := refs[i].b.Owner(ctx)
			require.NoError(t, err, "%s: so does the badge Login returned (it is idempotent)", p.name)
			assert.Equal(t, "alice", owner)
			bl := &bell{rang: make(chan string, 1)}
			require.NoError(t, refs[i].d.Watch(ctx, bl), p.name)
			assert.Equal(t, "ding", <-bl.rang, p.name)
		}
	}
}

// TestAStubOverALastingReferenceGoesOn: a stub over a *remote.Ref, sent
// to a third process, travels as that lasting reference: the third
// process's calls reach the object through the client, also after the
// client's link to the object's server was cut and restored.
func TestAStubOverALastingReferenceGoesOn(t *testing.T) {
	leakcheck.Check(t)
	ch := startDeskChain(t)
	ctx := testkit.Ctx(t, time.Minute)
	third := startServer(t, "127.0.0.1:0", &desk{})
	conn, err := broker.Dial(ctx, "tcp", third.addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })

	d, err := registry.LookupAs[Desk](ctx, ch.direct.Registry(), "desk")
	require.NoError(t, err)
	b, err := d.Login(ctx, "zoe")
	require.NoError(t, err)
	for cut := 0; cut < 2; cut++ {
		owner, err := broker.Call[string](ctx, conn.Root(), "Show", b)
		require.NoError(t, err, "cut %d", cut)
		assert.Equal(t, "zoe", owner)
		restore := ch.cut(t)
		restore()
		require.NoError(t, ch.direct.WaitConnected(ctx))
	}
}

// TestNestedStubsGoHome: stubs over lasting references, nested in a slice,
// a map and a struct field, sent back to the server that owns their
// targets, arrive there as its own objects, directly and through a relay
// (they used to arrive as references to a forwarding proxy in the
// client, which only top-level arguments escaped).
func TestNestedStubsGoHome(t *testing.T) {
	leakcheck.Check(t)
	ch := startDeskChain(t)
	ctx := testkit.Ctx(t, time.Minute)
	for _, p := range []struct {
		name string
		cl   *Client
	}{{"direct", ch.direct}, {"relay", ch.client}} {
		r, err := p.cl.Registry().Lookup(ctx, "desk")
		require.NoError(t, err, p.name)
		d, err := remoteable.As[Desk](r)
		require.NoError(t, err, p.name)
		b, err := d.Login(ctx, "ann")
		require.NoError(t, err, p.name)
		var got []string
		require.NoError(t, r.Call(ctx, "Homes", &got, []Badge{b}, map[string]Badge{"k": b}, Held{B: b}), p.name)
		assert.Equal(t, []string{"own ann", "own ann", "own ann"}, got, p.name)
	}
}

// badges hands out badges in a slice, declared idempotent.
type badges struct{ remoteable.Referenceable }

func (*badges) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"All": {Idempotent: true}}
}

// All returns two badges.
func (*badges) All(context.Context) ([]Badge, error) {
	return []Badge{&badge{owner: "a"}, &badge{owner: "b"}}, nil
}

// TestStubsInsideAResultDoNotLast pins what the guide says: stubs inside
// a result's slice are over bare references, which fail loudly (not with
// a stale answer) after an outage, even when the method is idempotent.
func TestStubsInsideAResultDoNotLast(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("badges", &badges{}))
	srv := startServer(t, "127.0.0.1:0", reg)
	p := proxyTo(t, srv.addr)
	cl := connect(t, p.Addr())
	ctx := testkit.Ctx(t, 30*time.Second)
	r, err := cl.Registry().Lookup(ctx, "badges")
	require.NoError(t, err)
	var first []Badge
	require.NoError(t, r.Call(ctx, "All", &first))
	require.Len(t, first, 2)
	owner, err := first[1].Owner(ctx)
	require.NoError(t, err)
	assert.Equal(t, "b", owner)
	p.Reset()
	var again []Badge
	require.NoError(t, r.Call(WaitForLink(ctx), "All", &again), "the manager is obtained again by name")
	owner, err = again[0].Owner(ctx)
	require.NoError(t, err, "the stubs of the new result work")
	assert.Equal(t, "a", owner)
	_, err = first[0].Owner(ctx)
	require.ErrorIs(t, err, broker.ErrDeadReference, "those of the old result fail loudly")
}
