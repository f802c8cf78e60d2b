package broker

// Regression tests for the defects an adversarial review of the security
// work found: each comment says what went wrong before the fix, and the
// test checks the claim that it broke.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestReviewPanickingAuthenticatorKeepsServerUp: a handler's, a policy's and
// a realm's panic are recovered ("take the process down" is something a peer
// cannot do, docs/security.md). An authenticator that panics on some
// credentials (a nil cr.TLS on a plaintext connection, a token without the
// expected separator) must refuse that peer, not kill the process.
// The server runs in a child process so that the crash is observable.
func TestReviewPanickingAuthenticatorKeepsServerUp(t *testing.T) {
	if os.Getenv("TETHER_REVIEW_CHILD") == "1" {
		auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
			// A typical bug: assumes TLS.
			return remoteable.Identity{Name: cr.TLS.ServerName, VerifiedBy: "tls-sni"}, nil
		})
		_, addr := startServer(t, newService(), WithAuthenticator(auth))
		_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithName("anyone"))
		// The peer must be refused; the server must still be there.
		require.ErrorIs(t, err, ErrAuthFailed)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReviewPanickingAuthenticatorKeepsServerUp$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TETHER_REVIEW_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("a peer's handshake crashed the server process:\n%s", firstLines(string(out), 12))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// TestReviewTokensRefuseEmptySecret: broker.Tokens verifies a name by "the
// token the table holds for that name". A table entry whose token is empty
// (an unset environment variable: Tokens(map[string]string{"admin":
// os.Getenv("ADMIN_TOKEN")})) verifies anyone who announces that name and
// sends no token at all. Tokens should refuse an empty secret (or the
// table).
func TestReviewTokensRefuseEmptySecret(t *testing.T) {
	leakcheck.Check(t)
	srv := NewServer(newAdmin("admin"), WithAuthenticator(Tokens(map[string]string{"admin": "", "bob": "b"})))
	err := srv.Serve(listen(t))
	require.Error(t, err, "a table with an empty token must not serve")
	assert.Contains(t, err.Error(), `the token for "admin" is empty`)
	srv = NewServer(newAdmin("admin"), WithAuthenticator(Tokens(map[string]string{"": "x"})))
	assert.ErrorContains(t, srv.Serve(listen(t)), "empty name")
}

// Relay is a manager that keeps an upstream reference in an embedded field to
// call it conveniently, and declares one method of its own. Embedding is
// exactly what claim 10 is about: promoted methods are not remote unless
// listed. Here the promoted method is Call, which turns the whole object into
// a forwarding proxy.
type embedsRef struct {
	remoteable.Referenceable
	*Ref // upstream, for this process's own use
}

func (e *embedsRef) Hello(ctx context.Context) (string, error) { return "hello from the relay", nil }

// TestReviewEmbeddedCallerIsNotAProxy: an object that embeds a *broker.Ref
// (or *remote.Ref, or a remoteable.Caller) gets a promoted Call method, and
// newExport treats any remoteable.Caller as a proxy: every call to it is
// forwarded upstream. Its own declared method is unreachable, and every
// method of the upstream object becomes callable by the peer, although the
// type lists nothing in RemoteMethods (claim 10).
func TestReviewEmbeddedCallerIsNotAProxy(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, up := startServer(t, newService())
	upConn := dial(t, up, WithName("relay"))
	_, addr := startServer(t, &embedsRef{Ref: upConn.Root()})
	c := dial(t, addr)

	s, err := Call[string](ctx, c.Root(), "Hello")
	assert.NoError(t, err, "the type's own method must be callable")
	assert.Equal(t, "hello from the relay", s)

	n, err := Call[int](ctx, c.Root(), "Add", 2, 3)
	assert.True(t, errors.Is(err, ErrUnknownMethod),
		"Add is the upstream's method, reached through a promoted Call; got n=%d err=%v", n, err)
}

// guardedProxy is a Caller that guards what it forwards, per method.
type guardedProxy struct {
	remoteable.Referenceable
	up *Ref
}

func (g *guardedProxy) Call(ctx context.Context, method string, reply any, args ...any) error {
	return g.up.Call(ctx, method, reply, args...)
}

func (g *guardedProxy) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{"Add": remoteable.AcceptOnlyFrom("root")}
}

// TestReviewDescribeThroughGuardedProxyListsOnlyAllowed: claim 7 says
// tether.describe lists only the methods the caller may call. For a guarded
// object that forwards every call (a Caller), the policy is asked for
// "tether.describe" only, and the forwarded description lists everything.
func TestReviewDescribeThroughGuardedProxyListsOnlyAllowed(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, up := startServer(t, newService())
	upConn := dial(t, up)
	_, addr := startServer(t, &guardedProxy{up: upConn.Root()})
	c := dial(t, addr, WithName("guest"))

	_, err := Call[int](ctx, c.Root(), "Add", 1, 2)
	require.ErrorIs(t, err, remoteable.ErrAccessDenied, "the guest may not call Add")
	d, err := c.Root().Describe(ctx)
	require.NoError(t, err)
	_, listed := d.Method("Add")
	assert.False(t, listed, "describe lists Add, which the caller may not call")
}

// TestReviewManyClientsFromOneHost: 40 legitimate clients on one host (a
// NAT, a sidecar, a test harness, the fan-out benchmark's 100 connections)
// dial at once a server whose authenticator takes 300 ms (a database or
// an identity provider behind it). With the per-host cap of 32 handshakes
// in progress the review found, the rest were closed before a byte was
// read, and the dialer got an error that did not say the server refused it
// for load, nor what to do. The default is 64 now, and the error says.
func TestReviewManyClientsFromOneHost(t *testing.T) {
	leakcheck.Check(t)
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return remoteable.Identity{}, ctx.Err()
		}
		return remoteable.Identity{Name: cr.Name}, nil
	})
	_, addr := startServer(t, newService(), WithAuthenticator(auth))
	ctx := testkit.Ctx(t, 30*time.Second)
	const n = 40
	errs := make(chan error, n)
	var conns sync.Map
	for i := 0; i < n; i++ {
		go func() {
			c, err := Dial(ctx, "tcp", addr)
			if err == nil {
				conns.Store(c, true)
			}
			errs <- err
		}()
	}
	var failed []error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	conns.Range(func(k, _ any) bool { c := k.(*Conn); c.Close(); <-c.Done(); return true })
	if len(failed) > 0 {
		t.Errorf("%d of %d legitimate dials from one host failed; the first: %v", len(failed), n, failed[0])
	}

	// Over the limit, the dialer's error says why it may have been closed
	// and what to do.
	release := make(chan struct{})
	held := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return remoteable.Identity{}, ctx.Err()
		}
		return remoteable.Identity{Name: cr.Name}, nil
	})
	tightSrv, tight := startServer(t, newService(), WithAuthenticator(held), WithHandshakeLimits(256, 1))
	first := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, "tcp", tight)
		if err == nil {
			c.Close()
			<-c.Done()
		}
		first <- err
	}()
	// The first dial holds the one slot while its authenticator runs.
	require.Eventually(t, func() bool { return tightSrv.Stats().Handshakes == 1 }, 5*time.Second, time.Millisecond)
	_, err := Dial(ctx, "tcp", tight)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "over its limit of handshakes in progress")
	assert.Contains(t, err.Error(), "retry later")
	close(release)
	require.NoError(t, <-first)
}

// genericValue declares its methods with value receivers on a generic type,
// and embeds base, whose Shared it shadows.
type genericValue[T any] struct {
	remoteable.Referenceable
	*base
	_ T
}

func (genericValue[T]) Shared() (string, error) { return "generic value shared", nil }
func (genericValue[T]) Own() (string, error)    { return "own", nil }

// TestReviewGenericValueReceiversStayRemote: claim 10 must not hide methods a
// type declares itself. A generic type's value-receiver methods, reached
// through a pointer (how Referenceables are exported), are the declared
// ones.
func TestReviewGenericValueReceiversStayRemote(t *testing.T) {
	for _, obj := range []any{&genericValue[int]{base: &base{}}, &genericValue[string]{base: &base{}}, genericValue[int]{base: &base{}}} {
		ot := objTypeOf(obj)
		assert.Contains(t, ot.names, "Own", "%T: Own is declared", obj)
		assert.Contains(t, ot.names, "Shared", "%T: Shared is declared (shadowing)", obj)
		assert.NotContains(t, ot.names, "Hello", "%T: Hello is promoted", obj)
	}
}

// TestReviewLargestHelloOverTLS: the read guard allows "the largest Hello,
// 16 KiB, plus 4 KiB of framing" before the handshake. A legitimate dialer
// with a token just under the Hello limit (a large JWT, say), over TLS,
// with keepalives at the minimum dead-peer timeout and a slow
// authenticator, must still be let in.
func TestReviewLargestHelloOverTLS(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, cliCfg := tlsConfigs(t)
	tok := strings.Repeat("x", handshakeMax-300) // with the 256-byte name, a Hello just under handshakeMax
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		time.Sleep(1500 * time.Millisecond) // keepalives flow meanwhile
		if cr.Token != tok {
			return remoteable.Identity{}, errors.New("wrong token")
		}
		return remoteable.Identity{Name: cr.Name, VerifiedBy: "jwt"}, nil
	})
	_, addr := startServer(t, newService(), WithTLS(srvCfg), WithAuthenticator(auth))
	c, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithTLS(cliCfg), WithToken(tok), WithName(strings.Repeat("n", 256)),
		WithDeadPeerTimeout(200*time.Millisecond))
	require.NoError(t, err)
	c.Close()
	<-c.Done()
}

// TestReviewOversizedHelloSaysWhy: "a refused handshake is reported as a
// typed error ... every mistake a user can make is an error that says what
// to do" (DESIGN.md). A token that makes the Hello larger than 16 KiB is
// a user's mistake; the dialer reads only "handshake: EOF".
func TestReviewOversizedHelloSaysWhy(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithToken(strings.Repeat("x", 17<<10)))
	require.Error(t, err)
	msg := err.Error()
	assert.True(t, strings.Contains(msg, "large") || strings.Contains(msg, "bytes") || strings.Contains(msg, "KiB"),
		"the error does not say the Hello is too large: %q", msg)
}

// throughRelayAgent admits the relay it dialed and the server behind it.
type throughRelayAgent struct {
	remoteable.Referenceable
	calls chan remoteable.Peer
}

func (*throughRelayAgent) RemotePolicy() remoteable.Policy {
	return remoteable.AcceptOnlyFrom("relay", "upstream")
}

func (a *throughRelayAgent) Ping(ctx context.Context) error {
	p, _ := remoteable.PeerFrom(ctx)
	a.calls <- p
	return nil
}

// TestReviewCallbackThroughRelayToAnonymousAgent: the agent/logic pattern
// (seed 000) through a relay. The agent verifies the relay by its
// certificate, the relay verifies the upstream by its certificate; the
// agent admits both. It has no client certificate (an agent rarely does).
// The upstream's callback, made with its handler's context, reached the
// agent with the agent itself, unverified, in ForwardedFor, so
// AcceptOnlyFrom refused the agent's own callback: the relay dropped only a
// verified callee. Each entry now records the connection on which it was
// verified, and the relay drops the one it added for the agent's.
func TestReviewCallbackThroughRelayToAnonymousAgent(t *testing.T) {
	leakcheck.Check(t)
	pki := newPKI(t)
	serverCfg := func(cn string) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{pki.cert(t, cn)}}
	}
	_, up := startServer(t, logic{}, WithTLS(serverCfg("upstream")), WithAuthenticator(Tokens(map[string]string{"relay": "r"})))
	upConn := dial(t, up, WithTLS(&tls.Config{RootCAs: pki.pool, ServerName: "upstream"}), WithName("relay"), WithToken("r"))
	require.Equal(t, remoteable.Identity{Name: "upstream", VerifiedBy: "tls"}, upConn.Peer().Identity())
	_, relay := startServer(t, upConn.Root(), WithTLS(serverCfg("relay")))
	c := dial(t, relay, WithTLS(&tls.Config{RootCAs: pki.pool, ServerName: "relay"}))
	require.Equal(t, remoteable.Identity{Name: "relay", VerifiedBy: "tls"}, c.Peer().Identity())

	agent := &throughRelayAgent{calls: make(chan remoteable.Peer, 1)}
	err := c.Root().Call(testkit.Ctx(t, 30*time.Second), "Register", nil, agent)
	require.NoError(t, err, "the agent's own callback was refused")
	p := <-agent.calls
	t.Logf("agent called by %v for %v", p.Identity(), p.ForwardedFor)
}

// TestReviewHandshakeRefusalRedactsNetworkErrors: claim 9, errors crossing
// a hop never reveal internal addresses. An authenticator (or a realm)
// that asks an identity provider or a database fails with a network error
// when that back end is down; the refusal is sent to the dialer, who is not
// even authenticated, with the back end's address and the system's words:
// encoder.message skips redaction when there is no connection yet ("a
// handshake's refusal: no link of ours failed").
func TestReviewHandshakeRefusalRedactsNetworkErrors(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	backend := ln.Addr().String()
	ln.Close() // the identity provider is down
	auth := AuthenticatorFunc(func(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", backend)
		if err != nil {
			return remoteable.Identity{}, fmt.Errorf("identity provider: %w", err)
		}
		nc.Close()
		return remoteable.Identity{Name: cr.Name, VerifiedBy: "idp"}, nil
	})
	_, addr := startServer(t, newService(), WithAuthenticator(auth))
	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithName("anyone"))
	require.ErrorIs(t, err, ErrAuthFailed)
	assert.NotContains(t, err.Error(), backend, "an unauthenticated dialer reads the back end's address")

	realm := func(ctx context.Context, p remoteable.Peer) (any, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", backend)
		if err != nil {
			return nil, err
		}
		nc.Close()
		return newService(), nil
	}
	_, addr = startServer(t, nil, WithRealm(realm))
	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr)
	require.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.NotContains(t, err.Error(), backend, "the dialer reads the realm's database address")
}

// TestReviewDepthOfOtherLeaves: claim 8, the sender refuses (ErrTooDeep)
// what the receiver would refuse, for every kind of value; the link must
// never be closed for a value the sender let through. Leaves the depth
// tests do not cover: a reference, an error, a time. (Held.)
func TestReviewDepthOfOtherLeaves(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, addr := startServer(t, newService())
	leaves := map[string]func() any{
		"reference": func() any { return newService() },
		"error":     func() any { return errors.New("x") },
		"time":      func() any { return time.Unix(1, 0) },
		"bytes":     func() any { return []byte("x") },
	}
	for name, leaf := range leaves {
		t.Run(name, func(t *testing.T) {
			for d := maxArgDepth - 8; d <= maxArgDepth+2; d++ {
				c := dial(t, addr)
				v := leaf()
				for i := 0; i < d; i++ {
					v = []any{v}
				}
				err := c.Root().Call(ctx, "Keep", nil, v)
				if err != nil && !errors.Is(err, ErrTooDeep) {
					t.Errorf("depth %d: %v", d, err)
				}
				if cerr := c.Err(); cerr != nil {
					t.Errorf("depth %d: the link died: %v", d, cerr)
				}
				err = c.Root().Call(ctx, "Nothing", nil)
				if err != nil {
					t.Errorf("depth %d: the link is no longer usable: %v", d, err)
					return
				}
			}
		})
	}
}

// mailbox accepts posts from "ops" only.
type mailbox struct {
	remoteable.Referenceable
	posts chan remoteable.Peer
}

func (*mailbox) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("ops") }

func (m *mailbox) Notify(ctx context.Context, msg string) error {
	p, _ := remoteable.PeerFrom(ctx)
	m.posts <- p
	return nil
}

// notifier calls back the watcher it is given, with its handler's context:
// the agent/logic pattern.
type notifier struct{ remoteable.Referenceable }

func (*notifier) Watch(ctx context.Context, w *Ref) error { return w.Call(ctx, "Notify", nil, "event") }

type reviewRoot struct {
	remoteable.Referenceable
	box *mailbox
}

func (r *reviewRoot) Mailbox() (*mailbox, error)   { return r.box, nil }
func (r *reviewRoot) Notifier() (*notifier, error) { return &notifier{}, nil }

// TestReviewHomecomingReferenceSkipsPolicy: claim 2, no confused deputy, for
// a handler calling on with its ctx. A peer may hold a reference to a
// guarded object it may not call (holding is not calling). It passes that
// reference to another of the server's objects whose handler calls back the
// reference it was given. The reference comes home as the local object, and
// broker.Ref.Call on a local object (localCall) never asks the policy,
// though the call is made with the handler's context, which names the
// refused peer: the mailbox gets a post from mallory.
func TestReviewHomecomingReferenceSkipsPolicy(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	box := &mailbox{posts: make(chan remoteable.Peer, 1)}
	_, addr := startServer(t, &reviewRoot{box: box}, WithAuthenticator(Tokens(map[string]string{"ops": "o", "mallory": "m"})))
	c := dial(t, addr, WithName("mallory"), WithToken("m"))

	mb, err := Call[*Ref](ctx, c.Root(), "Mailbox")
	require.NoError(t, err)
	err = mb.Call(ctx, "Notify", nil, "direct")
	require.ErrorIs(t, err, remoteable.ErrAccessDenied, "mallory may not post")

	n, err := Call[*Ref](ctx, c.Root(), "Notifier")
	require.NoError(t, err)
	err = n.Call(ctx, "Watch", nil, mb)
	select {
	case p := <-box.posts:
		t.Fatalf("the mailbox got a post on behalf of %v (Watch: %v)", p.Identity(), err)
	default:
	}
	require.ErrorIs(t, err, remoteable.ErrAccessDenied)
}
