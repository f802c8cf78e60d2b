package remote_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// spender is a manager whose methods have effects, none declared
// idempotent: each counts its runs.
type spender struct {
	remoteable.Referenceable
	spends, creates atomic.Int64
}

// RemoteMethods declares Get safe to repeat.
func (*spender) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}}
}

// Get returns s.
func (*spender) Get(ctx context.Context, s string) (string, error) { return s, nil }

// Spend counts a run, then fails with an error of its own that matches
// broker.ErrReleased: a handler that used a reference it had let go.
func (s *spender) Spend(ctx context.Context) (int64, error) {
	s.spends.Add(1)
	return 0, fmt.Errorf("the voucher: %w", broker.ErrReleased)
}

// Create counts a run and returns a new model.
func (s *spender) Create(ctx context.Context) (*cache.Map[string, int], error) {
	s.creates.Add(1)
	m := cache.NewMap[string, int]()
	if err := m.Set("room", 1); err != nil {
		return nil, err
	}
	return m, nil
}

// cutOnce is a client interceptor that, the first time a call matches,
// cuts the link (proxy.Reset) and waits until the client's first
// connection has ended: before the call is sent (before), or after its
// result came back (after, which then lets another caller move the
// *remote.Ref to the next link).
type cutOnce struct {
	proxy  *faultnet.Proxy
	match  func(*broker.CallInfo) bool
	before bool
	after  func(ctx context.Context)
	first  chan *broker.Conn // the client's connections, in order (latest)
	done   atomic.Bool
}

func (c *cutOnce) intercept(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
	if !c.match(call) || c.done.Swap(true) {
		return next(ctx, call)
	}
	conn := c.latest()
	if c.before {
		c.proxy.Reset()
		<-conn.Done()
		return next(ctx, call)
	}
	err := next(ctx, call)
	c.proxy.Reset()
	<-conn.Done()
	c.after(ctx)
	return err
}

// latest returns the client's newest connection: the one the call is on.
func (c *cutOnce) latest() *broker.Conn {
	conn := <-c.first
	for {
		select {
		case conn = <-c.first:
		default:
			return conn
		}
	}
}

// spenderClient serves a spender behind a proxy and connects a client
// through it with cut's interceptor.
func spenderClient(t *testing.T, cut *cutOnce) (*spender, *remote.Ref) {
	t.Helper()
	sp := &spender{}
	reg := registry.New()
	require.NoError(t, reg.Register("spender", sp))
	addr := serve(t, reg)
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	cut.proxy, cut.first = p, make(chan *broker.Conn, 8)
	cl := lasting(t, p.Addr(),
		remote.WithWatch(func(cl *remote.Client) { cl.Connected.Connect(func(c *broker.Conn) { cut.first <- c }) }),
		remote.WithBroker(broker.WithClientInterceptors(cut.intercept)))
	ref, err := cl.Registry().Lookup(testkit.Ctx(t, 10*time.Second), "spender")
	require.NoError(t, err)
	return sp, ref
}

// TestHandlersOwnReleasedErrorIsNotMadeAgain: a handler ran and returned
// an error of its own matching broker.ErrReleased; before its caller looks
// at it, the link ends and another caller moves the *remote.Ref to the
// next link. The call ran: it must not be made again there (it is not
// idempotent), and its error reaches the caller.
func TestHandlersOwnReleasedErrorIsNotMadeAgain(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	var ref *remote.Ref
	cut := &cutOnce{match: func(c *broker.CallInfo) bool { return c.Method == "Spend" }}
	cut.after = func(context.Context) {
		var got string
		require.NoError(t, ref.Call(remote.WaitForLink(ctx), "Get", &got, "x"), "another caller moves the Ref to the next link")
	}
	sp, r := spenderClient(t, cut)
	ref = r

	var n int64
	err := ref.Call(remote.WaitForLink(ctx), "Spend", &n)
	require.ErrorIs(t, err, broker.ErrReleased, "the handler's own error")
	var re *broker.RemoteError
	assert.ErrorAs(t, err, &re)
	assert.Equal(t, int64(1), sp.spends.Load(), "Spend ran once: it is not made again on the next link")
}

// TestMirrorOfACallThatRanIsNotMadeAgain: a call whose result is received
// as a mirror ran (Create, not idempotent), and the link ended before the
// mirror's subscription was sent. The call must not be made again on the
// next link: the caller gets the error, and Create ran once.
func TestMirrorOfACallThatRanIsNotMadeAgain(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	cut := &cutOnce{before: true, match: func(c *broker.CallInfo) bool { return c.Kind == broker.CallSubscribe }}
	sp, ref := spenderClient(t, cut)

	var mir *cache.Mirror[string, int]
	err := ref.Call(remote.WaitForLink(ctx), "Create", &mir)
	if mir != nil {
		t.Cleanup(func() { mir.Close() })
	}
	assert.Error(t, err, "the mirror could not subscribe: the caller is told")
	if err != nil {
		assert.Contains(t, err.Error(), `"Create" ran`, "the error says that the call ran")
	}
	assert.Equal(t, int64(1), sp.creates.Load(), "Create ran once: it is not made again on the next link")
}
