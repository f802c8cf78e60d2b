package broker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// The interfaces of these tests, with stubs written by hand as tether gen
// writes them. tNoStub has none registered; tShape is implemented by a
// Copyable.
type (
	tWatcher interface {
		Notify(ctx context.Context, msg string) error
	}
	tSession interface {
		Who(ctx context.Context) (string, error)
	}
	tNoStub interface {
		Nothing(ctx context.Context) error
	}
	tShape interface {
		Area(ctx context.Context) (int, error)
	}
)

type tWatcherStub struct{ c remoteable.Caller }

func (s *tWatcherStub) TetherCaller() remoteable.Caller { return s.c }
func (s *tWatcherStub) Notify(ctx context.Context, msg string) error {
	return s.c.Call(ctx, "Notify", nil, msg)
}

type tSessionStub struct{ c remoteable.Caller }

func (s *tSessionStub) TetherCaller() remoteable.Caller { return s.c }
func (s *tSessionStub) Who(ctx context.Context) (string, error) {
	var r string
	err := s.c.Call(ctx, "Who", &r)
	return r, err
}

// square is a Copyable that implements tShape: it arrives by value.
type square struct{ Side int }

func (s square) Area(context.Context) (int, error) { return s.Side * s.Side, nil }

func init() {
	remoteable.RegisterStub[tWatcher](func(c remoteable.Caller) tWatcher { return &tWatcherStub{c} },
		"Notify(ctx context.Context, msg string) error")
	remoteable.RegisterStub[tSession](func(c remoteable.Caller) tSession { return &tSessionStub{c} },
		"Who(ctx context.Context) (string, error)")
	remoteable.RegisterCopyable[square]("test.Square")
}

// session is the server's object behind a tSession.
type session struct {
	remoteable.Referenceable
	name string
}

func (s *session) Who(context.Context) (string, error) { return s.name, nil }

// watcher is a client's object behind a tWatcher: it records what it is
// told.
type watcher struct {
	remoteable.Referenceable
	got chan string
}

func newWatcher() *watcher { return &watcher{got: make(chan string, 16)} }

func (w *watcher) Notify(_ context.Context, msg string) error {
	w.got <- msg
	return nil
}

// holder carries a tWatcher in a struct field.
type holder struct {
	Label string
	W     tWatcher
}

// users is the server's manager: its methods take and return interfaces.
type users struct {
	remoteable.Referenceable
	mu   sync.Mutex
	seen []string // the Go types its interface parameters arrived as
}

func (u *users) saw(v any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.seen = append(u.seen, fmt.Sprintf("%T", v))
}

func (u *users) Login(_ context.Context, name string) (tSession, error) {
	return &session{name: name}, nil
}

func (u *users) Watch(ctx context.Context, w tWatcher) error {
	u.saw(w)
	return w.Notify(ctx, "watching")
}

func (u *users) WatchAll(ctx context.Context, ws []tWatcher) error {
	for i, w := range ws {
		u.saw(w)
		if err := w.Notify(ctx, fmt.Sprint("all ", i)); err != nil {
			return err
		}
	}
	return nil
}

func (u *users) Hold(ctx context.Context, h holder) error {
	u.saw(h.W)
	return h.W.Notify(ctx, h.Label)
}

func (u *users) Kind(_ context.Context, x any) (string, error) { return fmt.Sprintf("%T", x), nil }

// Mine reports whether s is one of this server's own sessions: a stub
// that comes home arrives as the original object.
func (u *users) Mine(_ context.Context, s tSession) (string, error) {
	u.saw(s)
	if own, ok := s.(*session); ok {
		return "mine: " + own.name, nil
	}
	return "not mine", nil
}

func (u *users) Whom(ctx context.Context, s tSession) (string, error) { return s.Who(ctx) }

func (u *users) NoStub(context.Context, tNoStub) error { return nil }

func (u *users) Back(_ context.Context, x any) (any, error) { return x, nil }

func (u *users) Shape(context.Context) (any, error) { return square{Side: 3}, nil }

func (u *users) Sessions(_ context.Context, names ...string) ([]tSession, error) {
	out := make([]tSession, len(names))
	for i, n := range names {
		out[i] = &session{name: n}
	}
	return out, nil
}

func (u *users) seenTypes() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// TestStubsCrossTheWire: a reference decoded into an interface type
// arrives as its stub, as a handler's parameter, a reply, an element of
// a slice and a struct field; a stub sent travels as the reference it
// wraps; one that comes home is the original object.
func TestStubsCrossTheWire(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		srv := &users{}
		cl, _ := tr.connect(t, srv, nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		root := cl.Root()

		// A reply of interface type: the stub over the reference.
		var s tSession
		require.NoError(t, root.Call(ctx, "Login", &s, "alice"))
		require.IsType(t, &tSessionStub{}, s)
		who, err := s.Who(ctx)
		require.NoError(t, err)
		assert.Equal(t, "alice", who)

		// The stub sent back arrives home as the server's *session.
		mine, err := Call[string](ctx, root, "Mine", s)
		require.NoError(t, err)
		assert.Equal(t, "mine: alice", mine)

		// A parameter of interface type: the stub over the client's object.
		w := newWatcher()
		require.NoError(t, root.Call(ctx, "Watch", nil, w))
		assert.Equal(t, "watching", <-w.got)

		// A stub over the client's own object is sent as that object.
		mystub := &tWatcherStub{c: localRef(w)}
		require.NoError(t, root.Call(ctx, "Watch", nil, mystub))
		assert.Equal(t, "watching", <-w.got)

		// Inside a slice and a struct field.
		require.NoError(t, root.Call(ctx, "WatchAll", nil, []tWatcher{w, mystub}))
		assert.Equal(t, "all 0", <-w.got)
		assert.Equal(t, "all 1", <-w.got)
		require.NoError(t, root.Call(ctx, "Hold", nil, holder{Label: "held", W: mystub}))
		assert.Equal(t, "held", <-w.got)
		stub := "*broker.tWatcherStub"
		assert.Equal(t, []string{"*broker.session", stub, stub, stub, stub, stub}, srv.seenTypes())

		// Inside an any: the reference (there is no interface to give it).
		kind, err := Call[string](ctx, root, "Kind", []any{s})
		require.NoError(t, err)
		assert.Equal(t, "[]interface {}", kind)
		var back any
		require.NoError(t, root.Call(ctx, "Back", &back, s))
		require.IsType(t, &Ref{}, back)
		sameSession, err := remoteable.As[tSession](back)
		require.NoError(t, err)
		who, err = sameSession.Who(ctx)
		require.NoError(t, err)
		assert.Equal(t, "alice", who)

		// A slice of interface type as a result.
		var ss []tSession
		require.NoError(t, root.Call(ctx, "Sessions", &ss, "bob", "carol"))
		require.Len(t, ss, 2)
		who, err = ss[1].Who(ctx)
		require.NoError(t, err)
		assert.Equal(t, "carol", who)
	})
}

// TestStubsGoOnToAnotherPeer: a stub received from one server and passed
// to another travels as the reference it wraps; the second server's calls
// reach the first through the client.
func TestStubsGoOnToAnotherPeer(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, addr1 := startServer(t, &users{})
	_, addr2 := startServer(t, &users{})
	c1, c2 := dial(t, addr1), dial(t, addr2)

	var s tSession
	require.NoError(t, c1.Root().Call(ctx, "Login", &s, "dave"))
	who, err := Call[string](ctx, c2.Root(), "Whom", s)
	require.NoError(t, err)
	assert.Equal(t, "dave", who)
	mine, err := Call[string](ctx, c2.Root(), "Mine", s)
	require.NoError(t, err)
	assert.Equal(t, "not mine", mine, "server 2 holds a stub over server 1's session")
}

// TestStubRefusals: what cannot become an interface value is an error
// that says why, never a zero value.
func TestStubRefusals(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, &users{}, nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		root := cl.Root()

		// A handler parameter of an interface without a stub: the server
		// refuses the arguments and says what its side lacks.
		err := root.Call(ctx, "NoStub", nil, newWatcher())
		require.ErrorIs(t, err, ErrBadArguments)
		assert.ErrorContains(t, err, "no stub registered for broker.tNoStub: run `tether gen -type tNoStub` in its package")

		// A reply into an interface without a stub.
		var ns tNoStub
		err = root.Call(ctx, "Login", &ns, "eve")
		require.ErrorIs(t, err, remoteable.ErrNoStub)
		assert.Nil(t, ns)

		// The client's own object, come home into an interface it does
		// not implement.
		var s tSession
		err = root.Call(ctx, "Back", &s, newWatcher())
		require.ErrorIs(t, err, remoteable.ErrNotCaller)
		assert.ErrorContains(t, err, "came home as this process's own *broker.watcher, which does not implement broker.tSession")

		// Plain data into an interface.
		err = root.Call(ctx, "Back", &s, 42)
		assert.ErrorContains(t, err, "into broker.tSession")

		// A stub that wraps nothing, or a Caller that cannot travel.
		err = root.Call(ctx, "Watch", nil, &tWatcherStub{})
		assert.ErrorContains(t, err, "wraps no Caller")
		err = root.Call(ctx, "Watch", nil, &tWatcherStub{c: plainCaller{}})
		assert.ErrorContains(t, err, "wraps a broker.plainCaller, which cannot be sent")
	})
}

// plainCaller is a Caller that is not a reference.
type plainCaller struct{}

func (plainCaller) Call(context.Context, string, any, ...any) error { return nil }

// TestCopyableIntoAnInterface: a Copyable whose type implements the
// interface arrives as that value.
func TestCopyableIntoAnInterface(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &users{})
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	var sh tShape
	require.NoError(t, c.Root().Call(ctx, "Shape", &sh))
	assert.Equal(t, square{Side: 3}, sh)
	var e error
	require.NoError(t, c.Root().Call(ctx, "Back", &e, nil), "error keeps taking null")
	assert.Nil(t, e)
}

// guardedSession is a session whose policy hides Who.
type guardedSession struct{ session }

func (g *guardedSession) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{"Who": remoteable.PolicyFunc(func(context.Context, string) error { return remoteable.ErrAccessDenied })}
}

func (u *users) Guarded(context.Context) (tSession, error) {
	return &guardedSession{session{name: "hidden"}}, nil
}

// TestDescribeListsRegisteredInterfaces: a description names the
// registered interfaces the object implements, with their methods as
// registered, over the wire; a peer sees only those it may call all of.
func TestDescribeListsRegisteredInterfaces(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &users{})
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	assert.Equal(t, []InterfaceDescription{{Name: "broker.tWatcher", Methods: []string{"Notify(ctx context.Context, msg string) error"}}},
		Describe(newWatcher()).Interfaces)
	assert.Empty(t, Describe(&users{}).Interfaces)

	var s tSession
	require.NoError(t, c.Root().Call(ctx, "Login", &s, "alice"))
	d, err := s.(remoteable.Stub).TetherCaller().(*Ref).Describe(ctx)
	require.NoError(t, err)
	assert.Equal(t, []InterfaceDescription{{Name: "broker.tSession", Methods: []string{"Who(ctx context.Context) (string, error)"}}}, d.Interfaces)

	require.NoError(t, c.Root().Call(ctx, "Guarded", &s))
	d, err = s.(remoteable.Stub).TetherCaller().(*Ref).Describe(ctx)
	require.NoError(t, err)
	assert.Empty(t, d.Interfaces, "the policy refuses Who, so the peer is not told of tSession")
	assert.Equal(t, "*broker.guardedSession", d.Type)
}

// policyProxy forwards every call to up, guarded by policy.
type policyProxy struct {
	remoteable.Referenceable
	up     *Ref
	policy remoteable.Policy
}

func (p *policyProxy) Call(ctx context.Context, method string, reply any, args ...any) error {
	return p.up.Call(ctx, method, reply, args...)
}

func (p *policyProxy) RemotePolicy() remoteable.Policy { return p.policy }

// TestDescribeThroughAGuardedProxyHidesInterfaces: a description forwarded
// by a guarded proxy lists an interface only when its policy admits every
// method of it.
func TestDescribeThroughAGuardedProxyHidesInterfaces(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, up := startServer(t, &session{name: "up"})
	upConn := dial(t, up)
	deny := remoteable.PolicyFunc(func(context.Context, string) error { return remoteable.ErrAccessDenied })
	for _, tc := range []struct {
		refused string
		want    int
	}{{"Other", 1}, {"Who", 0}} {
		_, addr := startServer(t, &policyProxy{up: upConn.Root(), policy: remoteable.MethodPolicies{tc.refused: deny}})
		d, err := dial(t, addr).Root().Describe(ctx)
		require.NoError(t, err)
		assert.Len(t, d.Interfaces, tc.want, "refusing %s", tc.refused)
	}
}

// TestDescribeNamesInterfaceParameters: a parameter or result of an
// interface type with a registered stub is described as a reference that
// implements it, named (not as any, which would tell a tool it may send
// plain data); the empty interface stays any and error stays error.
func TestDescribeNamesInterfaceParameters(t *testing.T) {
	d := Describe(&users{})
	watch, ok := d.Method("Watch")
	require.True(t, ok)
	assert.Equal(t, TypeDescription{Go: "broker.tWatcher", Kind: KindReference, Name: "broker.tWatcher"}, watch.Params[0])
	login, ok := d.Method("Login")
	require.True(t, ok)
	assert.Equal(t, KindReference, login.Result.Kind)
	assert.Equal(t, "broker.tSession", login.Result.Name)
	all, ok := d.Method("WatchAll")
	require.True(t, ok)
	assert.Equal(t, KindReference, all.Params[0].Elem.Kind)
	kind, ok := d.Method("Kind")
	require.True(t, ok)
	assert.Equal(t, KindAny, kind.Params[0].Kind)
}
