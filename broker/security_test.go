package broker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestDuplicateCallIDsAreAProtocolViolation sends thousands of calls that
// reuse the id of a call still running. Before the fix all of them ran,
// each overwrite leaked a handler teardown never cancelled, and Close hung.
func TestDuplicateCallIDsAreAProtocolViolation(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	var logged bytes.Buffer
	var lmu sync.Mutex
	srv := NewServer(svc, WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logged}, nil))))
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	p := rawConnect(t, ln.Addr().String(), true)
	for i := 0; i < 5000; i++ {
		p.sendMsg(func(e *encoder) { e.buf = appendCallHead(e.buf, 1, 0, "Block", 0, 0) })
	}
	// The server says why in a Goodbye when it can; the peer, still
	// writing, may miss it, so the server's log is what is checked.
	if bye := p.closedWith(); bye != nil {
		assert.ErrorIs(t, bye, ErrProtocol)
		assert.Contains(t, bye.Error(), "call id 1 reused")
	}
	lmu.Lock()
	assert.Contains(t, logged.String(), "call id 1 reused while that call is still in flight")
	lmu.Unlock()
	select {
	case <-svc.started:
	default:
		t.Fatal("the first call never ran")
	}
	assert.Len(t, svc.started, 0, "no call with the reused id ran")

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Server.Close hangs on handlers teardown never cancelled")
	}
	require.ErrorIs(t, <-served, ErrServerClosed)
}

// adminService guards Admin for the names it is given; Whoami reports who
// the call came from and whom it acts for.
type adminService struct {
	remoteable.Referenceable
	allowed []string
	seen    chan remoteable.Peer
}

func newAdmin(allowed ...string) *adminService {
	return &adminService{allowed: allowed, seen: make(chan remoteable.Peer, 16)}
}

func (a *adminService) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{"Admin": remoteable.AcceptOnlyFrom(a.allowed...)}
}

func (a *adminService) Admin(ctx context.Context, x int) (int, error) {
	p, _ := remoteable.PeerFrom(ctx)
	a.seen <- p
	return x * 2, nil
}

func (a *adminService) Whoami(ctx context.Context) (remoteable.Identity, error) {
	p, _ := remoteable.PeerFrom(ctx)
	return p.Identity(), nil
}

// testPKI is a CA and the certificates it signed, for tests that need
// certificates with chosen names.
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	pool  *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	ca, key, err := makeCert("identity test CA", nil, nil, true)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{ca: ca, caKey: key, pool: pool}
}

func (p *testPKI) cert(t *testing.T, cn string) tls.Certificate {
	c, k, err := makeCert(cn, p.ca, p.caKey, false)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k}
}

func (p *testPKI) server(t *testing.T) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.cert(t, "127.0.0.1")},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
}

func (p *testPKI) client(t *testing.T, cn string) *tls.Config {
	cfg := &tls.Config{RootCAs: p.pool}
	if cn != "" {
		cfg.Certificates = []tls.Certificate{p.cert(t, cn)}
	}
	return cfg
}

// TestSharedTokenDoesNotVerifyNames reproduces the hole: a holder of the
// shared token who announces "agent" is not the agent. Before the fix
// AcceptOnlyFrom("agent") let it in.
func TestSharedTokenDoesNotVerifyNames(t *testing.T) {
	leakcheck.Check(t)
	admin := newAdmin("agent")
	_, addr := startServer(t, admin, WithToken("shared"))
	impostor := dial(t, addr, WithName("agent"), WithToken("shared"))
	ctx := testkit.Ctx(t, 30*time.Second)

	id, err := Call[remoteable.Identity](ctx, impostor.Root(), "Whoami")
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "agent"}, id, "the name is only announced")

	_, err = Call[int](ctx, impostor.Root(), "Admin", 21)
	require.ErrorIs(t, err, remoteable.ErrUnverified)
	assert.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Contains(t, err.Error(), "not verified")
	assert.Len(t, admin.seen, 0, "Admin never ran")
}

// TestPerPeerTokensVerifyNames: with a table of names and tokens, a name is
// verified by its own token; an impostor with another's name is refused at
// the handshake.
func TestPerPeerTokensVerifyNames(t *testing.T) {
	leakcheck.Check(t)
	admin := newAdmin("agent")
	_, addr := startServer(t, admin, WithAuthenticator(Tokens(map[string]string{"agent": "a-secret", "bob": "b-secret"})))
	ctx := testkit.Ctx(t, 30*time.Second)

	agent := dial(t, addr, WithName("agent"), WithToken("a-secret"))
	id, err := Call[remoteable.Identity](ctx, agent.Root(), "Whoami")
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "agent", VerifiedBy: remoteable.VerifiedByToken}, id)
	n, err := Call[int](ctx, agent.Root(), "Admin", 21)
	require.NoError(t, err)
	assert.Equal(t, 42, n)

	bob := dial(t, addr, WithName("bob"), WithToken("b-secret"))
	_, err = Call[int](ctx, bob.Root(), "Admin", 21)
	assert.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.NotErrorIs(t, err, remoteable.ErrUnverified, "bob is verified, just not allowed")

	for _, bad := range [][]Option{
		{WithName("agent"), WithToken("b-secret")}, // bob's token, agent's name
		{WithName("agent")},                        // no token
		{WithName("carol"), WithToken("a-secret")}, // an unknown name
		{WithToken("a-secret")},                    // no name
	} {
		_, err := Dial(ctx, "tcp", addr, bad...)
		require.ErrorIs(t, err, ErrAuthFailed)
		assert.Contains(t, err.Error(), "unknown name or wrong token")
	}

	srv := NewServer(admin, WithToken("x"), WithAuthenticator(Tokens(nil)))
	assert.ErrorContains(t, srv.Serve(listen(t)), "the authenticator decides alone")
	_, err = Dial(ctx, "tcp", addr, WithAuthenticator(Tokens(nil)))
	assert.ErrorContains(t, err, "WithAuthenticator applies to a server")
}

// TestCertificatesVerifyNames: over mutual TLS the peer is known by its
// certificate; a peer announcing a name its certificate does not give is
// refused (before the fix, CN=mallory announcing "agent" passed
// AcceptOnlyFrom("agent")).
func TestCertificatesVerifyNames(t *testing.T) {
	leakcheck.Check(t)
	pki := newPKI(t)
	admin := newAdmin("agent")
	_, addr := startServer(t, admin, WithTLS(pki.server(t)), WithName("127.0.0.1"))
	ctx := testkit.Ctx(t, 30*time.Second)

	agent := dial(t, addr, WithTLS(pki.client(t, "agent")), WithName("agent"))
	id, err := Call[remoteable.Identity](ctx, agent.Root(), "Whoami")
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "agent", VerifiedBy: remoteable.VerifiedByTLS}, id)
	_, err = Call[int](ctx, agent.Root(), "Admin", 1)
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "127.0.0.1", VerifiedBy: remoteable.VerifiedByTLS}, agent.Peer().Identity(),
		"the server is verified by its certificate too")

	unnamed := dial(t, addr, WithTLS(pki.client(t, "agent")))
	id, err = Call[remoteable.Identity](ctx, unnamed.Root(), "Whoami")
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "agent", VerifiedBy: remoteable.VerifiedByTLS}, id, "known by its certificate")

	_, err = Dial(ctx, "tcp", addr, WithTLS(pki.client(t, "mallory")), WithName("agent"))
	require.ErrorIs(t, err, ErrAuthFailed)
	assert.Contains(t, err.Error(), `its certificate names ["mallory"]`)

	mallory := dial(t, addr, WithTLS(pki.client(t, "mallory")), WithName("mallory"))
	_, err = Call[int](ctx, mallory.Root(), "Admin", 1)
	assert.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Len(t, admin.seen, 1, "only the agent's call ran")
}

// TestAuthenticatorFunc: a pluggable authenticator sees the credentials and
// decides the identity, with its own label; its refusal is ErrAuthFailed.
func TestAuthenticatorFunc(t *testing.T) {
	leakcheck.Check(t)
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		if name, ok := strings.CutPrefix(cr.Token, "signed:"); ok {
			return remoteable.Identity{Name: name, VerifiedBy: "signature"}, nil
		}
		if cr.Token == "" {
			return remoteable.Identity{Name: cr.Name}, nil // admitted, unverified
		}
		return remoteable.Identity{}, errors.New("bad signature")
	})
	admin := newAdmin("ops")
	_, addr := startServer(t, admin, WithAuthenticator(auth))
	ctx := testkit.Ctx(t, 30*time.Second)

	ops := dial(t, addr, WithToken("signed:ops"))
	id, err := Call[remoteable.Identity](ctx, ops.Root(), "Whoami")
	require.NoError(t, err)
	assert.Equal(t, remoteable.Identity{Name: "ops", VerifiedBy: "signature"}, id)
	_, err = Call[int](ctx, ops.Root(), "Admin", 1)
	require.NoError(t, err)

	guest := dial(t, addr, WithName("ops"))
	_, err = Call[int](ctx, guest.Root(), "Admin", 1)
	assert.ErrorIs(t, err, remoteable.ErrUnverified)

	_, err = Dial(ctx, "tcp", addr, WithToken("forged"))
	require.ErrorIs(t, err, ErrAuthFailed)
	assert.Contains(t, err.Error(), "bad signature")
}

// relayOf starts a relay: a server whose root is a proxy for the root of
// the server at upstream, reached as "relay" with token "r". Its own
// peers are verified by the tokens given (none: unverified).
func relayOf(t *testing.T, upstream string, tokens map[string]string) string {
	up := dial(t, upstream, WithName("relay"), WithToken("r"))
	var opts []Option
	if tokens != nil {
		opts = append(opts, WithAuthenticator(Tokens(tokens)))
	}
	_, addr := startServer(t, up.Root(), opts...)
	return addr
}

// TestRelayDoesNotLendItsIdentity reproduces the confused deputy: upstream
// lets "relay" call Admin; before the fix any peer of the relay, even one
// without a token, called Admin through it. The original caller's identity
// now travels with the forwarded call and must pass the policy too.
func TestRelayDoesNotLendItsIdentity(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	upAuth := WithAuthenticator(Tokens(map[string]string{"relay": "r"}))

	t.Run("anonymous caller", func(t *testing.T) {
		admin := newAdmin("relay")
		_, up := startServer(t, admin, upAuth)
		anon := dial(t, relayOf(t, up, nil))
		_, err := Call[int](ctx, anon.Root(), "Admin", 1)
		require.ErrorIs(t, err, remoteable.ErrUnverified)
		assert.Contains(t, err.Error(), "anonymous peer")
		assert.Contains(t, err.Error(), `forwards this call`)
		assert.Len(t, admin.seen, 0)
	})

	t.Run("verified caller the upstream does not admit", func(t *testing.T) {
		admin := newAdmin("relay")
		_, up := startServer(t, admin, upAuth)
		alice := dial(t, relayOf(t, up, map[string]string{"alice": "a"}), WithName("alice"), WithToken("a"))
		_, err := Call[int](ctx, alice.Root(), "Admin", 1)
		require.ErrorIs(t, err, remoteable.ErrAccessDenied)
		assert.NotErrorIs(t, err, remoteable.ErrUnverified)
		assert.Contains(t, err.Error(), `"alice" (verified by token) may not call Admin`)
	})

	t.Run("both admitted", func(t *testing.T) {
		admin := newAdmin("relay", "alice")
		_, up := startServer(t, admin, upAuth)
		alice := dial(t, relayOf(t, up, map[string]string{"alice": "a"}), WithName("alice"), WithToken("a"))
		n, err := Call[int](ctx, alice.Root(), "Admin", 21)
		require.NoError(t, err)
		assert.Equal(t, 42, n)
		p := <-admin.seen
		assert.Equal(t, remoteable.Identity{Name: "relay", VerifiedBy: remoteable.VerifiedByToken}, p.Identity())
		assert.Equal(t, []remoteable.Identity{{Name: "alice", VerifiedBy: remoteable.VerifiedByToken}}, p.ForwardedFor,
			"upstream sees the relay and the original caller")
	})

	t.Run("two relays", func(t *testing.T) {
		admin := newAdmin("relay", "alice")
		_, up := startServer(t, admin, upAuth)
		first := relayOf(t, up, map[string]string{"relay": "r"}) // the second relay is "relay" too
		alice := dial(t, relayOf(t, first, map[string]string{"alice": "a"}), WithName("alice"), WithToken("a"))
		_, err := Call[int](ctx, alice.Root(), "Admin", 21)
		require.NoError(t, err)
		p := <-admin.seen
		assert.Equal(t, []remoteable.Identity{{Name: "alice", VerifiedBy: "token"}, {Name: "relay", VerifiedBy: "token"}},
			p.ForwardedFor, "the original caller first, then each hop before the peer")
	})
}

// forwarder is a manager whose handler calls an upstream object, with its
// own context or AsSelf.
type forwarder struct {
	remoteable.Referenceable
	up *Ref
}

func (f *forwarder) Relay(ctx context.Context, x int) (int, error) {
	return Call[int](ctx, f.up, "Admin", x)
}

func (f *forwarder) RelayAsSelf(ctx context.Context, x int) (int, error) {
	return Call[int](AsSelf(ctx), f.up, "Admin", x)
}

// TestHandlersCallingOnActForTheirCaller: a handler that calls on with its
// context acts for its caller too; AsSelf lends the process's own identity
// knowingly.
func TestHandlersCallingOnActForTheirCaller(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	admin := newAdmin("middle")
	_, up := startServer(t, admin, WithAuthenticator(Tokens(map[string]string{"middle": "m"})))
	upConn := dial(t, up, WithName("middle"), WithToken("m"))
	_, mid := startServer(t, &forwarder{up: upConn.Root()})
	cl := dial(t, mid, WithName("guest"))

	_, err := Call[int](ctx, cl.Root(), "Relay", 1)
	require.ErrorIs(t, err, remoteable.ErrUnverified)
	assert.Contains(t, err.Error(), `"guest" (unverified)`)

	n, err := Call[int](ctx, cl.Root(), "RelayAsSelf", 21)
	require.NoError(t, err)
	assert.Equal(t, 42, n)
	assert.Empty(t, (<-admin.seen).ForwardedFor)
}

// agentObj is a client's object that only the server may call.
type agentObj struct {
	remoteable.Referenceable
	calls chan remoteable.Peer
}

func (a *agentObj) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("server") }
func (a *agentObj) Ping(ctx context.Context) error {
	p, _ := remoteable.PeerFrom(ctx)
	a.calls <- p
	return nil
}

// logic calls back the agent it is given, within the agent's own call.
type logic struct{ remoteable.Referenceable }

func (logic) Register(ctx context.Context, agent *Ref) error { return agent.Call(ctx, "Ping", nil) }

// TestCallbackToTheCallerIsNotForwarded: a server calling its caller back
// with the handler's context acts for nobody else (the callee is that
// caller), so the agent/logic pattern keeps working with a guarded agent.
func TestCallbackToTheCallerIsNotForwarded(t *testing.T) {
	leakcheck.Check(t)
	pki := newPKI(t)
	srvCfg := pki.server(t)
	srvCfg.Certificates = []tls.Certificate{pki.cert(t, "server")}
	_, addr := startServer(t, logic{}, WithTLS(srvCfg))
	cli := pki.client(t, "agent")
	cli.ServerName = "server"
	c := dial(t, addr, WithTLS(cli))
	agent := &agentObj{calls: make(chan remoteable.Peer, 1)}
	require.NoError(t, c.Root().Call(testkit.Ctx(t, 30*time.Second), "Register", nil, agent))
	p := <-agent.calls
	assert.Equal(t, remoteable.Identity{Name: "server", VerifiedBy: remoteable.VerifiedByTLS}, p.Identity())
	assert.Empty(t, p.ForwardedFor)
}

// locked admits only "agent", for every method.
type locked struct {
	remoteable.Referenceable
	ran chan string
}

func (*locked) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("agent") }
func (l *locked) Store(ctx context.Context, n int, keep *Ref) error {
	l.ran <- "Store"
	return nil
}

// TestPolicyRunsBeforeAnythingIsDecoded: a refused caller learns nothing
// about the object (not its Go type, not which methods exist, not their
// arguments), and its call leaves nothing behind: its arguments are not
// decoded and the references in them are released at once.
func TestPolicyRunsBeforeAnythingIsDecoded(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	lk := &locked{ran: make(chan string, 10)}
	srv, addr := startServer(t, lk, WithAuthenticator(Tokens(map[string]string{"agent": "a", "bob": "b"})))
	bob := dial(t, addr, WithName("bob"), WithToken("b"))

	for _, c := range []struct {
		method string
		args   []any
	}{
		{"Launch", nil},                           // no such method
		{"Store", []any{"not a number", nil}},     // wrong argument type
		{"Store", []any{1, 2, 3, 4, 5}},           // wrong count
		{"Store", []any{1, newService()}},         // a reference the server would import
		{DescribeMethod, nil},                     // the description
		{"Store", []any{1, &locked{ran: lk.ran}}}, // another reference
	} {
		err := bob.Root().Call(ctx, c.method, nil, c.args...)
		require.ErrorIs(t, err, remoteable.ErrAccessDenied, c.method)
		assert.NotErrorIs(t, err, ErrUnknownMethod)
		assert.NotErrorIs(t, err, ErrBadArguments)
		assert.NotContains(t, err.Error(), "locked", "the Go type is not revealed")
		assert.Contains(t, err.Error(), `"bob" (verified by token) may not call `+c.method)
	}
	assert.Len(t, lk.ran, 0)
	require.Eventually(t, func() bool { return bob.Stats().Exports == 0 }, 5*time.Second, 5*time.Millisecond,
		"the references in refused calls were released")
	assert.Equal(t, 0, srv.Stats().Imports, "the server holds nothing of bob's")
}

// TestDescribeShowsOnlyWhatThePeerMayCall: the description a peer gets
// lists the methods its policy lets it call, and nothing else.
func TestDescribeShowsOnlyWhatThePeerMayCall(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, addr := startServer(t, newAdmin("agent"), WithAuthenticator(Tokens(map[string]string{"agent": "a", "bob": "b"})))
	names := func(c *Conn) []string {
		d, err := c.Root().Describe(ctx)
		require.NoError(t, err)
		var out []string
		for _, m := range d.Methods {
			out = append(out, m.Name)
		}
		return out
	}
	assert.Equal(t, []string{"Admin", "Whoami"}, names(dial(t, addr, WithName("agent"), WithToken("a"))))
	assert.Equal(t, []string{"Whoami"}, names(dial(t, addr, WithName("bob"), WithToken("b"))))
}

// panicky's policy panics: the call is refused, the connection lives.
type panicky struct{ remoteable.Referenceable }

func (panicky) RemotePolicy() remoteable.Policy {
	return remoteable.PolicyFunc(func(context.Context, string) error { panic("policy bug") })
}
func (panicky) Nothing() error { return nil }

func TestPanickingPolicyRefusesTheCall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, panicky{})
	c := dial(t, addr)
	err := c.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil)
	assert.ErrorIs(t, err, ErrPanic)
	assert.Contains(t, err.Error(), "policy bug")
	assert.NoError(t, c.Err())
}

// TestForwardedForIsBounded: a call may act for at most MaxForwardedFor
// parties. The hop that would exceed it fails the call itself; a peer that
// sends more anyway gets a typed refusal, and a malformed list closes the
// connection.
func TestForwardedForIsBounded(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	dial(t, addr) // the connection an incoming call came on, for the context below
	sc := serverConn(t, srv)
	out := dial(t, addr)

	full := make([]remoteable.Identity, remoteable.MaxForwardedFor-1)
	for i := range full {
		full[i] = remoteable.Identity{Name: fmt.Sprintf("hop%d", i), VerifiedBy: "token"}
	}
	handler := &callCtx{c: sc, peer: remoteable.Peer{Name: "last", VerifiedBy: "token", ForwardedFor: full}}
	var n int
	require.NoError(t, out.Root().Call(handler, "Add", &n, 1, 2), "8 parties travel")
	handler.peer = remoteable.Peer{Name: "last", ForwardedFor: append(full, remoteable.Identity{Name: "one too many"})}
	err := out.Root().Call(handler, "Add", &n, 1, 2)
	require.ErrorIs(t, err, ErrTooManyHops)
	assert.Contains(t, err.Error(), "AsSelf")
	require.NoError(t, out.Root().Call(AsSelf(handler), "Add", &n, 1, 2))

	p := rawConnect(t, addr, true)
	p.sendMsg(func(e *encoder) {
		e.buf = appendCallHeadExt(e.buf, 1, 0, "Add", 0, 2)
		e.buf = cborx.AppendUint(cborx.AppendUint(e.buf, 1), 2)
		e.buf = appendCallExt(e.buf, callExt{acting: actingFor{ids: make([]remoteable.Identity, remoteable.MaxForwardedFor+1)}})
	})
	typ, carried, err := p.next()
	require.NoError(t, err)
	require.Equal(t, uint64(msgFail), typ)
	assert.ErrorIs(t, carried, ErrTooManyHops)

	p.sendMsg(func(e *encoder) {
		e.buf = appendCallHeadExt(e.buf, 2, 0, "Add", 0, 2)
		e.buf = cborx.AppendUint(cborx.AppendUint(e.buf, 1), 2)
		e.buf = appendCallExt(e.buf, callExt{acting: actingFor{ids: []remoteable.Identity{{Name: strings.Repeat("x", 300)}}}})
	})
	bye := p.closedWith()
	require.ErrorIs(t, bye, ErrProtocol)
	assert.Contains(t, bye.Error(), "more than the 256 a name may have")
}

// guestRoot is what a guest sees: no admin methods at all.
type guestRoot struct{ remoteable.Referenceable }

func (guestRoot) Hello(ctx context.Context) (string, error) { return "hello, guest", nil }

// TestRealmGivesEachPeerItsRoot: with a realm (cred's avatars) each
// authenticated peer gets a root of its own; a realm's refusal refuses the
// peer at the handshake.
func TestRealmGivesEachPeerItsRoot(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	admin := newAdmin("ops")
	realm := func(ctx context.Context, p remoteable.Peer) (any, error) {
		switch {
		case p.Name == "ops" && p.Verified():
			return admin, nil
		case p.Name == "banned":
			return nil, errors.New("banned for spamming")
		}
		return guestRoot{}, nil
	}
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		if cr.Name == "ops" && cr.Token == "o" {
			return remoteable.Identity{Name: "ops", VerifiedBy: "token"}, nil
		}
		return remoteable.Identity{Name: cr.Name}, nil
	})
	_, addr := startServer(t, nil, WithRealm(realm), WithAuthenticator(auth))

	ops := dial(t, addr, WithName("ops"), WithToken("o"))
	n, err := Call[int](ctx, ops.Root(), "Admin", 21)
	require.NoError(t, err)
	assert.Equal(t, 42, n)

	guest := dial(t, addr, WithName("ops")) // no token: unverified, so a guest
	_, err = Call[int](ctx, guest.Root(), "Admin", 21)
	assert.ErrorIs(t, err, ErrUnknownMethod, "a guest's root has no Admin")
	s, err := Call[string](ctx, guest.Root(), "Hello")
	require.NoError(t, err)
	assert.Equal(t, "hello, guest", s)

	_, err = Dial(ctx, "tcp", addr, WithName("banned"))
	require.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Contains(t, err.Error(), "banned for spamming")

	srv := NewServer(admin, WithRealm(realm))
	assert.ErrorContains(t, srv.Serve(listen(t)), "pass nil")
	srv = NewServer(nil)
	assert.ErrorContains(t, srv.Serve(listen(t)), "give the server a root")
}

// TestRefusalsDoNotRevealAddresses: an authenticator that fails on a
// network error of its own (a directory it cannot reach) refuses the peer
// without telling it where the directory is.
func TestRefusalsDoNotRevealAddresses(t *testing.T) {
	leakcheck.Check(t)
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		_, err := net.Dial("tcp", "127.0.0.1:1") // nothing listens there
		return remoteable.Identity{}, fmt.Errorf("directory lookup: %w", err)
	})
	_, addr := startServer(t, newService(), WithAuthenticator(auth), WithName("gatekeeper"))
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr)
	require.ErrorIs(t, err, ErrAuthFailed)
	assert.NotContains(t, err.Error(), "127.0.0.1")
	assert.NotContains(t, err.Error(), "connection refused")
	assert.Contains(t, err.Error(), `directory lookup: a network error at "gatekeeper"`)
}
