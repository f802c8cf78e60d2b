package remote

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// users is the manager most tests publish.
type users struct {
	remoteable.Referenceable
	label   string
	bumps   atomic.Int64
	gate    chan struct{} // Hold waits on it
	holding chan string
}

func newUsers(label string) *users {
	return &users{label: label, gate: make(chan struct{}), holding: make(chan string, 10)}
}

// waitHolding waits until the handler of the call that reports to res
// (Hold or Peek, named want) runs, waiting on u's gate. A call that
// returns first never reached its handler (a link or a deadline that
// ended on the way), and one whose handler has not run within a minute is
// stuck: either fails the test, rather than leave it waiting on holding
// until the test binary's timeout, which hides which call went wrong.
func (u *users) waitHolding(t testing.TB, want string, res <-chan error) {
	t.Helper()
	select {
	case got := <-u.holding:
		require.Equal(t, want, got)
	case err := <-res:
		t.Fatalf("%s returned before its handler ran: %v", want, err)
	case <-time.After(time.Minute):
		t.Fatalf("%s's handler did not run within a minute", want)
	}
}

func (*users) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{
		"Get":     {Idempotent: true},
		"Account": {Idempotent: true},
		"Peek":    {Idempotent: true},
	}
}

// Card is a Copyable.
type Card struct {
	Holder string
	Limit  int
	Issued time.Time
}

func init() { remoteable.RegisterCopyable[Card]("remote.test.Card") }

// TypeOf returns the Go type of what it was given.
func (u *users) TypeOf(ctx context.Context, v any) (string, error) { return fmt.Sprintf("%T", v), nil }

// Inspect checks the Go type of what it was given, and returns it.
func (u *users) Inspect(ctx context.Context, v any) (any, error) {
	if _, ok := v.(Card); !ok {
		if _, isTag := v.(cbor.Tag); !isTag {
			return nil, fmt.Errorf("got a %T", v)
		}
	}
	return v, nil
}

func (u *users) Get(ctx context.Context, name string) (string, error) {
	return u.label + ":" + name, nil
}

// Bump is not idempotent: every execution counts.
func (u *users) Bump(ctx context.Context) (int64, error) { return u.bumps.Add(1), nil }

// Peek is idempotent and waits until the gate opens or ctx ends.
func (u *users) Peek(ctx context.Context) (string, error) {
	u.holding <- "Peek"
	select {
	case <-u.gate:
		return u.label, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Hold is not idempotent and waits like Peek.
func (u *users) Hold(ctx context.Context) (int64, error) {
	n := u.bumps.Add(1)
	u.holding <- "Hold"
	select {
	case <-u.gate:
		return n, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Account returns a new account object; declared idempotent (replayable).
func (u *users) Account(ctx context.Context, owner string) (*account, error) {
	return &account{owner: u.label + "/" + owner}, nil
}

// Open returns a new account object; not declared idempotent.
func (u *users) Open(ctx context.Context, owner string) (*account, error) {
	return &account{owner: u.label + "/" + owner}, nil
}

// Notify calls the caller's listener back.
func (u *users) Notify(ctx context.Context, l *broker.Ref, msg string) (string, error) {
	var got string
	err := l.Call(ctx, "Hear", &got, u.label+":"+msg)
	return got, err
}

type account struct {
	remoteable.Referenceable
	owner string
}

func (a *account) Owner(ctx context.Context) (string, error) { return a.owner, nil }

// listener is a client-side object the server calls back.
type listener struct {
	remoteable.Referenceable
	heard chan string
}

func (l *listener) Hear(msg string) (string, error) {
	l.heard <- msg
	return "heard " + msg, nil
}

// server is a broker server on a fixed address that can be restarted.
type server struct {
	t    *testing.T
	addr string
	srv  *broker.Server
	done chan error
}

func startServer(t *testing.T, addr string, root any, opts ...broker.Option) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	s := &server{t: t, addr: ln.Addr().String(), srv: broker.NewServer(root, opts...), done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	<-s.done
	s.srv = nil
}

// publish returns a registry holding m as "users".
func publish(t *testing.T, m any) *registry.Registry {
	reg := registry.New()
	require.NoError(t, reg.Register("users", m))
	return reg
}

func proxyTo(t *testing.T, addr string) *faultnet.Proxy {
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// fast are client options for tests: quick detection and retries.
//
// Its dead-peer timeout is long: outages that close or reset a link are
// found at once whatever it is, and a short one (400 ms) ended links that
// were merely starved of CPU on a loaded machine under -race ("heard
// nothing for 527ms" in TestRollingRestartFailsNoCall, also
// TestWaitForLinkLookupThroughARelay, TestThreeHopsSurviveTheMiddleLinkCut).
// A test that black-holes a link adds quickDeadPeer. The dial timeout is
// long for the same reason: a first dial that a loaded machine took more
// than 500 ms over failed, and calls made meanwhile failed fast with
// ErrDisconnected (TestRelayedReferenceThatCannotBeReplayedFailsPromptly,
// "the relay cannot reach its server").
func fast() []Option {
	return []Option{
		WithBroker(broker.WithDeadPeerTimeout(10 * time.Second)),
		WithBackoff(Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}),
		WithDialTimeout(5 * time.Second),
	}
}

// quickDeadPeer is the dead-peer timeout (400 ms) and dial timeout (500
// ms) of a test that black-holes a link: the keepalive finds it dead
// soon, and a dial into the black hole gives up soon.
func quickDeadPeer() Option {
	return optionFunc(func(o *options) {
		WithBroker(broker.WithDeadPeerTimeout(400 * time.Millisecond)).apply(o)
		WithDialTimeout(500 * time.Millisecond).apply(o)
	})
}

func connect(t *testing.T, addr string, opts ...Option) *Client {
	t.Helper()
	cl, err := Connect(context.Background(), "tcp", addr, append(fast(), opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// transitions counts a client's Connected and Disconnected signals.
type transitions struct {
	mu                      sync.Mutex
	connected, disconnected int
}

// connectWatched connects with the signals counted from before the first
// dial (WithWatch), so that the first link's Connected is counted too.
func connectWatched(t *testing.T, addr string, opts ...Option) (*Client, *transitions) {
	t.Helper()
	var tr *transitions
	cl := connect(t, addr, append(opts, WithWatch(func(cl *Client) { tr = watch(cl) }))...)
	return cl, tr
}

func watch(cl *Client) *transitions {
	tr := &transitions{}
	cl.Connected.Connect(func(*broker.Conn) { tr.mu.Lock(); tr.connected++; tr.mu.Unlock() })
	cl.Disconnected.Connect(func(error) { tr.mu.Lock(); tr.disconnected++; tr.mu.Unlock() })
	return tr
}

func (tr *transitions) counts() (int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.connected, tr.disconnected
}

// reach waits (bounded) until at least c Connected and d Disconnected
// signals were counted: a signal's handlers run after the state change
// they announce is visible, so a test that saw the state waits for them.
func (tr *transitions) reach(t *testing.T, c, d int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		gotC, gotD := tr.counts()
		if gotC >= c && gotD >= d {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("signals counted: Connected %d, Disconnected %d; want at least %d and %d", gotC, gotD, c, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitState waits (bounded) until the client is in state s.
func waitState(t *testing.T, cl *Client, s State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for cl.State() != s {
		if !cl.WaitForStateChange(ctx, cl.State()) {
			t.Fatalf("client never reached %v (now %v)", s, cl.State())
		}
	}
}
