package mistakes

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Point is a parameter type.
type Point struct{ X, Y int }

// shop is the manager the mistakes are made against.
type shop struct{ model *cache.Map[string, int] }

func (s *shop) Add(ctx context.Context, a, b int) (int, error)             { return a + b, nil }
func (s *shop) Move(ctx context.Context, p Point) (Point, error)           { return Point{p.X + 1, p.Y + 1}, nil }
func (s *shop) Name(ctx context.Context) (string, error)                   { return "shop", nil }
func (s *shop) Panic(ctx context.Context) error                            { panic("boom") }
func (s *shop) Keep(ctx context.Context, v any) error                      { return nil }
func (s *shop) Blob(ctx context.Context, n int) ([]byte, error)            { return make([]byte, n), nil }
func (s *shop) Model(ctx context.Context) (*cache.Map[string, int], error) { return s.model, nil }
func (s *shop) Ask(ctx context.Context, r *broker.Ref) (string, error) {
	return broker.Call[string](ctx, r, "Name")
}
func (s *shop) Wait(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }

// counter's methods have pointer receivers: a counter value has none.
type counter struct{ n int }

func (c *counter) Inc(ctx context.Context) (int, error) { c.n++; return c.n, nil }

// typo declares a method it does not have.
type typo struct{}

func (*typo) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Fetch": {Idempotent: true}}
}
func (*typo) Get(ctx context.Context) (string, error) { return "", nil }

// ctxLast takes its context last.
type ctxLast struct{}

func (*ctxLast) Get(name string, ctx context.Context) (string, error) { return name, nil }

// vault admits only a peer verified as "admin".
type vault struct{ remoteable.Referenceable }

func (vault) RemotePolicy() remoteable.Policy          { return remoteable.AcceptOnlyFrom("admin") }
func (vault) Open(ctx context.Context) (string, error) { return "gold", nil }

// env is a server publishing a registry with "shop" and "vault", and a raw
// connection and a lasting client to it.
type env struct {
	addr string
	reg  *registry.Registry
	conn *broker.Conn
	cl   *remote.Client
}

func start(t *testing.T) *env {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("shop", &shop{model: cache.NewMap[string, int]()}))
	require.NoError(t, reg.Register("vault", &vault{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg, broker.WithToken("s3cret"), broker.WithMaxMessageSize(64<<10))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	e := &env{addr: ln.Addr().String(), reg: reg}
	e.conn, err = broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithToken("s3cret"))
	require.NoError(t, err)
	t.Cleanup(func() { e.conn.Close(); <-e.conn.Done() })
	e.cl, err = remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, remote.WithBroker(broker.WithToken("s3cret")))
	require.NoError(t, err)
	t.Cleanup(func() { e.cl.Close() })
	return e
}

// lookup returns a raw reference to a manager.
func (e *env) lookup(t *testing.T, name string) *broker.Ref {
	r, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), e.conn.Root(), "Lookup", name)
	require.NoError(t, err)
	return r
}

// mistake is one thing a new user gets wrong.
type mistake struct {
	name string
	do   func(t *testing.T, e *env) error
	is   error       // the sentinel errors.Is must match
	code broker.Code // broker.CodeOf
	says []string    // what the message must name (what to fix)
}

func TestMistakes(t *testing.T) {
	leakcheck.Check(t)
	mistakes := []mistake{
		{"a method that does not exist", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Ad", nil, 1, 2)
		}, broker.ErrUnknownMethod, broker.Unimplemented, []string{`"Ad"`}},
		{"too many arguments", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Add", nil, 1, 2, 3)
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"Add takes 2 arguments, got 3"}},
		{"too few arguments, checked before sending", func(t *testing.T, e *env) error {
			users, err := e.cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shop")
			require.NoError(t, err)
			return users.Call(testkit.Ctx(t, 20*time.Second), "Add", nil, 1)
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"Add takes 2 arguments, got 1"}},
		{"an argument of the wrong type", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Add", nil, "one", 2)
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"Add", "int"}},
		{"a reply pointer of the wrong type", func(t *testing.T, e *env) error {
			var n int
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Name", &n)
		}, broker.ErrBadReply, broker.InvalidArgument, []string{"int"}},
		{"a reply that is not a pointer", func(t *testing.T, e *env) error {
			var s string
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Name", s)
		}, broker.ErrBadReply, broker.InvalidArgument, []string{"pointer"}},
		{"a manager nobody registered", func(t *testing.T, e *env) error {
			_, err := e.cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shops")
			return err
		}, registry.ErrNotFound, broker.NotFound, []string{`"shops"`}},
		{"a name registered twice", func(t *testing.T, e *env) error {
			return e.reg.Register("shop", &shop{})
		}, registry.ErrExists, broker.InvalidArgument, []string{`"shop"`}},
		{"a server-only option given to Dial", func(t *testing.T, e *env) error {
			_, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithHandshakeLimits(10, 2))
			return err
		}, broker.ErrInvalidOption, broker.InvalidArgument, []string{"WithHandshakeLimits", "remove it"}},
		{"a dial-only option given to a server", func(t *testing.T, e *env) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			err = broker.NewServer(registry.New(), broker.WithRoot(&vault{})).Serve(ln)
			_, dialErr := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
			assert.Error(t, dialErr, "Serve left its listener open")
			return err
		}, broker.ErrInvalidOption, broker.InvalidArgument, []string{"WithRoot", "remove it"}},
		{"a negative limit", func(t *testing.T, e *env) error {
			_, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithMaxConcurrentCalls(-1))
			return err
		}, broker.ErrInvalidOption, broker.InvalidArgument, []string{"WithMaxConcurrentCalls", "positive"}},
		{"a negative dial timeout on a client", func(t *testing.T, e *env) error {
			_, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, remote.WithDialTimeout(-time.Second))
			return err
		}, broker.ErrInvalidOption, broker.InvalidArgument, []string{"WithDialTimeout"}},
		{"a gateway with a zero timeout", func(t *testing.T, e *env) error {
			_, err := gateway.New(e.cl, gateway.WithTimeout(0))
			return err
		}, broker.ErrInvalidOption, broker.InvalidArgument, []string{"WithTimeout", "positive"}},
		{"a manager whose methods have pointer receivers, registered by value", func(t *testing.T, e *env) error {
			return e.reg.Register("counter", counter{})
		}, broker.ErrNotCallable, broker.InvalidArgument, []string{`"counter"`, "pointer receiver", "publish a pointer"}},
		{"RemoteMethods naming a method the type does not have", func(t *testing.T, e *env) error {
			return e.reg.Register("typo", &typo{})
		}, broker.ErrNotCallable, broker.InvalidArgument, []string{"Fetch", "fix the name"}},
		{"a context that is not the first parameter", func(t *testing.T, e *env) error {
			return e.reg.Register("ctxlast", &ctxLast{})
		}, broker.ErrNotCallable, broker.InvalidArgument, []string{"Get", "move the context to the first parameter"}},
		{"a server whose root has nothing callable", func(t *testing.T, e *env) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			return broker.NewServer(counter{}).Serve(ln)
		}, broker.ErrNotCallable, broker.InvalidArgument, []string{"publish a pointer"}},
		{"a wrong token on a lasting client", func(t *testing.T, e *env) error {
			cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, remote.WithBroker(broker.WithToken("guess")))
			require.NoError(t, err)
			defer cl.Close()
			_, err = cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shop")
			assert.NotErrorIs(t, err, remote.ErrDisconnected, "a refusal is not an outage")
			return err
		}, broker.ErrAuthFailed, broker.Unauthenticated, []string{"authentication failed", "WithToken"}},
		{"a wrong token", func(t *testing.T, e *env) error {
			_, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithToken("guess"))
			return err
		}, broker.ErrAuthFailed, broker.Unauthenticated, []string{"authentication failed"}},
		{"a call on a released reference", func(t *testing.T, e *env) error {
			r := e.lookup(t, "shop")
			r.Release()
			return r.Call(testkit.Ctx(t, 20*time.Second), "Name", nil)
		}, broker.ErrReleased, broker.FailedPrecondition, []string{"released"}},
		{"a call on a reference whose connection closed", func(t *testing.T, e *env) error {
			c, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithToken("s3cret"))
			require.NoError(t, err)
			r, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), c.Root(), "Lookup", "shop")
			require.NoError(t, err)
			c.Close()
			<-c.Done()
			return r.Call(testkit.Ctx(t, 20*time.Second), "Name", nil)
		}, broker.ErrDeadReference, broker.Unavailable, []string{"dead reference"}},
		{"a call the object's policy refuses", func(t *testing.T, e *env) error {
			return e.lookup(t, "vault").Call(testkit.Ctx(t, 20*time.Second), "Open", nil)
		}, remoteable.ErrUnverified, broker.Unauthenticated, []string{"Open", "verify peers with mutual TLS or broker.WithAuthenticator"}},
		{"a handler that panics", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Panic", nil)
		}, broker.ErrPanic, broker.Internal, []string{"Panic"}},
		{"a value nested too deeply", func(t *testing.T, e *env) error {
			var v any = 1
			for range 40 {
				v = []any{v}
			}
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Keep", nil, v)
		}, broker.ErrTooDeep, broker.InvalidArgument, []string{"flatten"}},
		{"a result larger than the caller accepts", func(t *testing.T, e *env) error {
			c, err := broker.Dial(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, broker.WithToken("s3cret"), broker.WithMaxMessageSize(4096))
			require.NoError(t, err)
			defer func() { c.Close(); <-c.Done() }()
			r, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), c.Root(), "Lookup", "shop")
			require.NoError(t, err)
			return r.Call(testkit.Ctx(t, 20*time.Second), "Blob", nil, 10000)
		}, broker.ErrMessageTooLarge, broker.ResourceExhausted, []string{"4096"}},
		{"an argument larger than the server accepts", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Keep", nil, make([]byte, 100<<10))
		}, broker.ErrMessageTooLarge, broker.ResourceExhausted, []string{"65536"}},
		{"a deadline too short for the call", func(t *testing.T, e *env) error {
			c, cancel := context.WithTimeout(testkit.Ctx(t, 20*time.Second), 50*time.Millisecond)
			defer cancel()
			return e.lookup(t, "shop").Call(c, "Wait", nil)
		}, context.DeadlineExceeded, broker.DeadlineExceeded, []string{"deadline"}},
		{"a call on a closed client", func(t *testing.T, e *env) error {
			cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, remote.WithBroker(broker.WithToken("s3cret")))
			require.NoError(t, err)
			cl.Close()
			_, err = cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shop")
			return err
		}, broker.ErrClosed, broker.Canceled, []string{"closed"}},
		{"a struct that shares no field with the parameter's type", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Move", nil, struct{ A, B int }{1, 2})
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"Move", "shares no field", "Point"}},
		{"nil for a reference parameter", func(t *testing.T, e *env) error {
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Ask", nil, nil)
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"argument 1", "*broker.Ref"}},
		{"a released reference passed on", func(t *testing.T, e *env) error {
			mine := e.lookup(t, "shop")
			mine.Release()
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Ask", nil, mine)
		}, broker.ErrReleased, broker.FailedPrecondition, []string{"argument 1 of Ask", "still held"}},
		{"a mirror of a model whose owner restarted, returned by a method not declared idempotent", func(t *testing.T, e *env) error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := ln.Addr().String()
			serve := func(ln net.Listener) func() {
				reg := registry.New()
				require.NoError(t, reg.Register("shop", &shop{model: cache.NewMap[string, int]()}))
				srv := broker.NewServer(reg)
				done := make(chan error, 1)
				go func() { done <- srv.Serve(ln) }()
				return func() { srv.Close(); <-done }
			}
			stop := serve(ln)
			cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", addr)
			require.NoError(t, err)
			defer cl.Close()
			shop, err := cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shop")
			require.NoError(t, err)
			var mir *cache.Mirror[string, int]
			require.NoError(t, shop.Call(testkit.Ctx(t, 20*time.Second), "Model", &mir))
			lost := make(chan error, 1)
			mir.Lost.Connect(func(err error) { lost <- err })
			stop() // the owner restarts: a new process, a new model
			ln, err = net.Listen("tcp", addr)
			require.NoError(t, err)
			defer serve(ln)()
			select {
			case err := <-lost:
				assert.True(t, mir.Stale())
				assert.Equal(t, err, mir.Err())
				return err
			case <-testkit.Ctx(t, 20*time.Second).Done():
				return errors.New("no Lost signal")
			}
		}, cache.ErrSourceLost, broker.FailedPrecondition, []string{"Idempotent"}},
		{"a model received into a map instead of a mirror", func(t *testing.T, e *env) error {
			var m map[string]int
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Model", &m)
		}, broker.ErrBadReply, broker.InvalidArgument, []string{"Mirror"}},
		{"binary data in a string argument", func(t *testing.T, e *env) error {
			err := e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Keep", nil, "\xff\xfe")
			assert.NoError(t, e.conn.Err(), "the connection is unharmed")
			return err
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{"argument 1 of Keep", "UTF-8", "[]byte"}},
		{"binary data in a model's string value", func(t *testing.T, e *env) error {
			return cache.NewMap[string, string]().Set("k", "\xff")
		}, broker.ErrBadArguments, broker.InvalidArgument, []string{`key "k"`, "UTF-8"}},
		{"passing on a reference from a closed client", func(t *testing.T, e *env) error {
			cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", e.addr, remote.WithBroker(broker.WithToken("s3cret")))
			require.NoError(t, err)
			shop, err := cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "shop")
			require.NoError(t, err)
			cl.Close()
			return e.lookup(t, "shop").Call(testkit.Ctx(t, 20*time.Second), "Ask", nil, shop)
		}, broker.ErrClosed, broker.Canceled, []string{"argument 1 of Ask", "remote.Client that was closed", "open Client"}},
	}
	e := start(t)
	for _, m := range mistakes {
		t.Run(m.name, func(t *testing.T) {
			err := m.do(t, e)
			require.Error(t, err, "no error for a mistake")
			assert.ErrorIs(t, err, m.is)
			assert.Equal(t, m.code, broker.CodeOf(err), "code of %v", err)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "tether: ") || errors.Is(m.is, context.DeadlineExceeded), "message does not start with \"tether: \": %s", msg)
			assert.LessOrEqual(t, strings.Count(msg, "tether:"), 1, "a repeated prefix: %s", msg)
			for _, s := range m.says {
				assert.Contains(t, msg, s, "the message does not say what to fix")
			}
		})
	}
	assert.GreaterOrEqual(t, len(mistakes), 25)
}
