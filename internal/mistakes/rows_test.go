package mistakes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// desk's methods fail in the ways guide §12's rows describe.
type desk struct{ started chan struct{} }

func (d *desk) Wait(ctx context.Context) error {
	select {
	case d.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}
func (d *desk) Plain(ctx context.Context) error { return errors.New("desk: out of paper") }
func (d *desk) Classified(ctx context.Context) error {
	return broker.NewError(broker.NotFound, errors.New("desk: no such drawer"))
}
func (d *desk) Registered(ctx context.Context) error { return errNoPen }
func (d *desk) Late(ctx context.Context) error {
	return fmt.Errorf("desk: %w", context.DeadlineExceeded)
}
func (d *desk) Drawer(ctx context.Context) (*drawer, error) { return &drawer{}, nil }

// drawer travels by reference.
type drawer struct {
	remoteable.Referenceable
	_ int // not zero-sized: each drawer is its own object
}

func (*drawer) Open(ctx context.Context) error { return nil }

var errNoPen = broker.NewError(broker.ResourceExhausted, errors.New("desk: no pen left"))

func init() { remoteable.RegisterError("mistakes.no-pen", errNoPen) }

// deskGateway serves a desk that wants a token and returns a gateway in
// front of it, with the desk; both are closed when the test ends.
func deskGateway(t *testing.T, opts ...gateway.Option) (*gateway.Gateway, *desk) {
	t.Helper()
	addr, d, _ := serveDesk(t, broker.WithToken("s3cret"))
	cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", addr, remote.WithBroker(broker.WithToken("s3cret")))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	gw, err := gateway.New(cl, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { gw.Close() })
	return gw, d
}

// requireGatewayError checks that err is a *gateway.Error with this
// JSON-RPC code, data.name and data.code.
func requireGatewayError(t *testing.T, err error, code int, name, class string) {
	t.Helper()
	var ge *gateway.Error
	require.ErrorAs(t, err, &ge)
	assert.Equal(t, code, ge.Code)
	assert.Equal(t, name, ge.Data.Name)
	assert.Equal(t, class, ge.Data.Code)
}

// serveDesk serves a registry with "desk" and "vault" on a new listener.
func serveDesk(t *testing.T, opts ...broker.Option) (addr string, d *desk, stop func()) {
	t.Helper()
	d = &desk{started: make(chan struct{}, 1)}
	reg := registry.New()
	require.NoError(t, reg.Register("desk", d))
	require.NoError(t, reg.Register("vault", &vault{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(reg, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close(); <-done }) }
	t.Cleanup(stop)
	return ln.Addr().String(), d, stop
}

func dialDesk(t *testing.T, addr string, opts ...broker.Option) (*broker.Conn, *broker.Ref) {
	t.Helper()
	c := brokertest.Dial(t, addr, opts...)
	r, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), c.Root(), "Lookup", "desk")
	require.NoError(t, err)
	return c, r
}

// TestGuideRows checks the rows of guide §12 that TestMistakes does not
// make: each row's sentinel and code, and a message starting "tether:"
// once.
func TestGuideRows(t *testing.T) {
	leakcheck.Check(t)
	rows := []mistake{
		{"you cancelled the call's context", func(t *testing.T, e *env) error {
			addr, d, _ := serveDesk(t)
			_, r := dialDesk(t, addr)
			c, cancel := context.WithCancel(testkit.Ctx(t, 20*time.Second))
			go func() { <-d.started; cancel() }()
			return r.Call(c, "Wait", nil)
		}, context.Canceled, broker.Canceled, nil},
		{"Serve after Close", func(t *testing.T, e *env) error {
			srv := broker.NewServer(registry.New())
			srv.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			defer ln.Close()
			return srv.Serve(ln)
		}, broker.ErrServerClosed, broker.Unavailable, nil},
		{"the connection died with the call in flight", func(t *testing.T, e *env) error {
			addr, d, stop := serveDesk(t)
			_, r := dialDesk(t, addr)
			go func() { <-d.started; stop() }()
			return r.Call(testkit.Ctx(t, 20*time.Second), "Wait", nil)
		}, broker.ErrConnectionLost, broker.Unavailable, []string{"Wait"}},
		{"the peer closed the connection", func(t *testing.T, e *env) error {
			addr, _, stop := serveDesk(t)
			c, _ := dialDesk(t, addr)
			stop()
			<-c.Done()
			return c.Root().Call(testkit.Ctx(t, 20*time.Second), "Lookup", nil, "desk")
		}, broker.ErrPeerClosed, broker.Unavailable, nil},
		{"a lasting client waiting out a backoff", func(t *testing.T, e *env) error {
			addr, _, stop := serveDesk(t)
			cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", addr, remote.WithBackoff(remote.Backoff{Initial: time.Minute, Max: time.Minute, Multiplier: 1}))
			require.NoError(t, err)
			defer cl.Close()
			require.NoError(t, cl.WaitConnected(testkit.Ctx(t, 20*time.Second)))
			stop()
			require.Eventually(t, func() bool { return cl.Err() != nil }, 10*time.Second, 10*time.Millisecond, "state %v stats %+v", cl.State(), cl.Stats())
			_, err = cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "desk")
			return err
		}, remote.ErrDisconnected, broker.Unavailable, nil},
		{"too many concurrent calls", func(t *testing.T, e *env) error {
			addr, d, _ := serveDesk(t, broker.WithMaxConcurrentCalls(1))
			_, r := dialDesk(t, addr)
			c, cancel := context.WithCancel(testkit.Ctx(t, 20*time.Second))
			first := make(chan error, 1)
			go func() { first <- r.Call(c, "Wait", nil) }()
			<-d.started
			err := r.Call(testkit.Ctx(t, 20*time.Second), "Wait", nil)
			cancel()
			<-first
			return err
		}, broker.ErrTooManyCalls, broker.ResourceExhausted, nil},
		{"too many references exported to one peer", func(t *testing.T, e *env) error {
			addr, _, _ := serveDesk(t, broker.WithMaxExports(4))
			_, r := dialDesk(t, addr)
			for range 10 {
				if _, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), r, "Drawer"); err != nil {
					return err
				}
			}
			return errors.New("no limit")
		}, broker.ErrTooManyReferences, broker.ResourceExhausted, []string{"4"}},
		{"the object's policy refuses a verified peer", func(t *testing.T, e *env) error {
			addr, _, _ := serveDesk(t, broker.WithAuthenticator(broker.Tokens(map[string]string{"bob": "b0b"})))
			c, _ := dialDesk(t, addr, broker.WithName("bob"), broker.WithToken("b0b"))
			v, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), c.Root(), "Lookup", "vault")
			require.NoError(t, err)
			return v.Call(testkit.Ctx(t, 20*time.Second), "Open", nil)
		}, remoteable.ErrAccessDenied, broker.PermissionDenied, []string{"Open"}},
		{"a closed gateway", func(t *testing.T, e *env) error {
			gw, err := gateway.New(e.cl)
			require.NoError(t, err)
			gw.Close()
			_, err = gw.Call(testkit.Ctx(t, 20*time.Second), "shop.Name", nil)
			requireGatewayError(t, err, gateway.CodeUnavailable, "tether.closed", "unavailable")
			return err
		}, gateway.ErrClosed, broker.Unavailable, nil},
		{"a gateway request whose context ended", func(t *testing.T, e *env) error {
			gw, d := deskGateway(t)
			c, cancel := context.WithCancel(testkit.Ctx(t, 20*time.Second))
			go func() { <-d.started; cancel() }()
			_, err := gw.Call(c, "desk.Wait", nil)
			requireGatewayError(t, err, gateway.CodeTimeout, "tether.cancelled", "canceled")
			return err
		}, gateway.ErrInterrupted, broker.Canceled, nil},
		{"a gateway call that did not finish in time", func(t *testing.T, e *env) error {
			gw, _ := deskGateway(t, gateway.WithTimeout(50*time.Millisecond))
			_, err := gw.Call(testkit.Ctx(t, 20*time.Second), "desk.Wait", nil)
			requireGatewayError(t, err, gateway.CodeTimeout, "tether.timeout", "deadline_exceeded")
			return err
		}, context.DeadlineExceeded, broker.DeadlineExceeded, []string{"did not finish in time"}},
		{"a gateway call whose deadline passed on the server first", func(t *testing.T, e *env) error {
			gw, _ := deskGateway(t)
			_, err := gw.Call(testkit.Ctx(t, 20*time.Second), "desk.Late", nil)
			requireGatewayError(t, err, gateway.CodeTimeout, "tether.timeout", "deadline_exceeded")
			return err
		}, context.DeadlineExceeded, broker.DeadlineExceeded, []string{"did not finish in time"}},
		{"an application's classified error travels with its class", func(t *testing.T, e *env) error {
			addr, _, _ := serveDesk(t)
			_, r := dialDesk(t, addr)
			return r.Call(testkit.Ctx(t, 20*time.Second), "Registered", nil)
		}, errNoPen, broker.ResourceExhausted, nil},
	}
	e := start(t)
	for _, m := range rows {
		t.Run(m.name, func(t *testing.T) {
			err := m.do(t, e)
			require.Error(t, err)
			assert.ErrorIs(t, err, m.is)
			assert.Equal(t, m.code, broker.CodeOf(err), "code of %v", err)
			msg := err.Error()
			if !errors.Is(m.is, errNoPen) && !errors.Is(m.is, context.Canceled) {
				assert.True(t, strings.HasPrefix(msg, "tether: "), "message does not start with \"tether: \": %s", msg)
			}
			assert.LessOrEqual(t, strings.Count(msg, "tether:"), 1, "a repeated prefix: %s", msg)
			for _, s := range m.says {
				assert.Contains(t, msg, s)
			}
		})
	}
	t.Run("an unclassified error is unknown, a classified one keeps its class unregistered", func(t *testing.T) {
		addr, _, _ := serveDesk(t)
		_, r := dialDesk(t, addr)
		err := r.Call(testkit.Ctx(t, 20*time.Second), "Plain", nil)
		require.Error(t, err)
		assert.Equal(t, broker.Unknown, broker.CodeOf(err), "%v", err)
		err = r.Call(testkit.Ctx(t, 20*time.Second), "Classified", nil)
		require.Error(t, err)
		assert.Equal(t, broker.NotFound, broker.CodeOf(err), "%v", err)
	})
}

// serveRegistry serves reg on a new listener and returns its address.
func serveRegistry(t *testing.T, reg *registry.Registry) string {
	t.Helper()
	_, addr := brokertest.Serve(t, reg)
	return addr
}

// dialManager dials addr and looks name up.
func dialManager(t *testing.T, addr, name string) (*broker.Conn, *broker.Ref) {
	t.Helper()
	c := brokertest.Dial(t, addr)
	r, err := broker.Call[*broker.Ref](testkit.Ctx(t, 20*time.Second), c.Root(), "Lookup", name)
	require.NoError(t, err)
	return c, r
}
