package broker

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// drainServer serves svc on loopback TCP, returning the server and the
// result of its Serve.
func drainServer(t *testing.T, svc *service) (*Server, string, <-chan error) {
	t.Helper()
	ln := listen(t)
	srv := NewServer(svc, WithName("origin"))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().String(), served
}

// blockCalls starts n calls of Block on c and waits until their handlers
// run; their results arrive on the returned channel.
func blockCalls(t *testing.T, ctx context.Context, c *Conn, svc *service, n int) <-chan error {
	t.Helper()
	results := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			got, err := Call[string](ctx, c.Root(), "Block")
			if err == nil && got != "released" {
				err = errors.New("Block returned " + got)
			}
			results <- err
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case <-svc.started:
		case <-ctx.Done():
			t.Fatal("the Block handlers did not start")
		}
	}
	return results
}

// waitClosed waits for ch, failing the test after a while.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

// TestShutdownFinishesCallsInFlight drains a server with two calls
// running: the peer hears that the server is going away, a call made
// then is refused with ErrGoingAway (Unavailable, not run), health says
// draining, the running calls finish and answer, and then the connection
// ends with an error matching ErrGoingAway.
func TestShutdownFinishesCallsInFlight(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, served := drainServer(t, svc)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	h, err := Health(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, StatusServing, h.Status)
	assert.Equal(t, "origin", h.Name)
	assert.Equal(t, 1, h.Conns)
	assert.Positive(t, h.Uptime)

	results := blockCalls(t, ctx, c, svc, 2)
	shut := make(chan error, 2)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitClosed(t, c.GoingAway(), "the going-away notice")
	require.ErrorIs(t, <-served, ErrServerClosed, "Serve returns once the listener is closed")
	go func() { shut <- srv.Shutdown(ctx) }() // a second one waits as the first does

	// Not even sent: this side has answered the notice already (see
	// TestNoCallFollowsTheAnswerToGoingAway; TestGoingAwayDoesNotBreakAnOlderPeer
	// checks the server's refusal of a call that arrives anyway).
	err = c.Root().Call(ctx, "Nothing", nil)
	require.ErrorIs(t, err, ErrGoingAway)
	assert.NotErrorIs(t, err, ErrDeadReference, "the refused call did not run and the link is up")
	assert.Equal(t, Unavailable, CodeOf(err))
	assert.Contains(t, err.Error(), `tether: server is shutting down: "Nothing" was not sent, since the peer said it is going away; `+
		`it did not run: call again, a remote.Client reconnects by itself`)

	h, err = Health(ctx, c)
	require.NoError(t, err, "health is answered while the server drains")
	assert.Equal(t, StatusDraining, h.Status)

	select {
	case err := <-shut:
		t.Fatalf("a Shutdown returned (%v) with calls running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(svc.release)
	require.NoError(t, <-results)
	require.NoError(t, <-results)
	require.NoError(t, <-shut)
	require.NoError(t, <-shut)
	waitClosed(t, c.Closed(), "the end of the connection")
	assert.ErrorIs(t, c.Err(), ErrGoingAway)
	assert.ErrorIs(t, c.Err(), ErrPeerClosed)
	assert.NoError(t, srv.Shutdown(ctx), "Shutdown after Shutdown does nothing")
	assert.NoError(t, srv.Close(), "Close after Shutdown does nothing")
}

// TestShutdownCutsCallsWhenCtxEnds gives the drain less time than the
// running call takes: the call is cut (ErrConnectionLost for its caller)
// and Shutdown returns ctx's error.
func TestShutdownCutsCallsWhenCtxEnds(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, _ := drainServer(t, svc)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	results := blockCalls(t, ctx, c, svc, 1)

	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err := srv.Shutdown(sctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "shutdown cut calls that were still running")
	assert.ErrorIs(t, <-results, ErrConnectionLost)
	close(svc.release)
}

// TestCloseDuringShutdownCutsAtOnce closes a draining server: the running
// call is cut and Shutdown reports it.
func TestCloseDuringShutdownCutsAtOnce(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, _ := drainServer(t, svc)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	results := blockCalls(t, ctx, c, svc, 1)

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitClosed(t, c.GoingAway(), "the going-away notice")
	require.NoError(t, srv.Close())
	assert.ErrorIs(t, <-shut, ErrServerClosed)
	assert.ErrorIs(t, <-results, ErrConnectionLost)
	close(svc.release)
}

// TestShutdownWithoutCallsIsQuick drains an idle server with a peer: it
// closes at once, well within its deadline.
func TestShutdownWithoutCallsIsQuick(t *testing.T) {
	leakcheck.Check(t)
	srv, addr, served := drainServer(t, newService())
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, <-served, ErrServerClosed)
	waitClosed(t, c.Closed(), "the end of the connection")
	assert.ErrorIs(t, c.Err(), ErrGoingAway)
}

// TestGoingAwayDoesNotBreakAnOlderPeer plays a peer written before the
// going-away notice existed: it answers the notice as it answers any call
// of a method it does not know, with a Fail. The server drops that
// answer, still answers the peer's call in flight, and closes without a
// protocol violation.
func TestGoingAwayDoesNotBreakAnOlderPeer(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, _ := drainServer(t, svc)
	p := rawConnect(t, addr, true)
	p.call(1, 0, "Block")
	waitStarted(t, svc)

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	body, err := p.fr.Next()
	require.NoError(t, err)
	m, err := parseMessage(body)
	require.NoError(t, err)
	require.Equal(t, msgCall, m.kind)
	in, err := parseCall(&m)
	require.NoError(t, err)
	assert.Equal(t, GoingAwayMethod, string(in.method))
	assert.Equal(t, uint64(0), in.target)
	assert.Equal(t, 0, in.argc)

	// What an older peer answers: the method is unknown on its root.
	p.sendMsg(func(e *encoder) {
		require.NoError(t, encodeFail(e, in.id, ErrUnknownMethod, ""))
	})
	p.call(2, 0, "Nothing")
	typ, carried, err := p.next()
	require.NoError(t, err)
	require.Equal(t, uint64(msgFail), typ)
	assert.ErrorIs(t, carried, ErrGoingAway, "a call after the notice is refused")
	assert.Contains(t, carried.Error(), `tether: server is shutting down: "Nothing" did not run; call again, a remote.Client reconnects by itself`)
	close(svc.release)
	typ, carried, err = p.next()
	require.NoError(t, err)
	assert.Equal(t, uint64(msgReturn), typ, "the call in flight is answered: %v", carried)
	require.NoError(t, <-shut)
	assert.NoError(t, p.closedWith(), "closed without a goodbye: no protocol violation")
}

// TestNoCallFollowsTheAnswerToGoingAway: once a peer has answered the
// going-away notice, it sends no more calls on that connection (the
// draining server closes once it has answered what came before the
// answer, so a call sent later could be cut in flight, with "connection
// lost" for a call that never ran). A call made then fails at once with
// ErrGoingAway, unsent; health is still asked.
func TestNoCallFollowsTheAnswerToGoingAway(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, _ := drainServer(t, svc)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	results := blockCalls(t, ctx, c, svc, 1) // holds the drain open
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitClosed(t, c.GoingAway(), "the going-away notice")

	// The answer is queued before GoingAway closes: from then on no call
	// goes out (the server would refuse it with a RemoteError).
	for i := 0; i < 20; i++ {
		err := c.Root().Call(ctx, "Add", nil, 1, 2)
		var re *RemoteError
		require.False(t, errors.As(err, &re), "call %d after the answer reached the server: %v", i, err)
		require.ErrorIs(t, err, ErrGoingAway)
		assert.Equal(t, Unavailable, CodeOf(err))
		assert.Contains(t, err.Error(), `"Add" was not sent, since the peer said it is going away; it did not run`)
	}
	// A call large enough to go on a message stream of its own is held
	// back alike: it would reach a server that may have closed by then,
	// and be cut (ErrConnectionLost, "it may have run") instead.
	err := c.Root().Call(ctx, "Echo", nil, make([]byte, 256<<10))
	var re *RemoteError
	require.False(t, errors.As(err, &re), "a large call after the answer reached the server: %v", err)
	require.ErrorIs(t, err, ErrGoingAway)
	assert.Contains(t, err.Error(), `"Echo" was not sent`)
	h, err := Health(ctx, c)
	require.NoError(t, err, "health is still asked")
	assert.Equal(t, StatusDraining, h.Status)

	close(svc.release)
	require.NoError(t, <-results)
	require.NoError(t, <-shut)
	waitClosed(t, c.Closed(), "the end of the connection")
}

// waitStarted waits for one handler of svc to start.
func waitStarted(t *testing.T, svc *service) {
	t.Helper()
	select {
	case <-svc.started:
	case <-time.After(15 * time.Second):
		t.Fatal("the handler did not start")
	}
}

// TestHealthOnADialersConnection asks health of a dialer, which is no
// server: the method is unknown there.
func TestHealthOnADialersConnection(t *testing.T) {
	leakcheck.Check(t)
	srv, addr, _ := drainServer(t, newService())
	dial(t, addr, WithRoot(newService()))
	ctx := testkit.Ctx(t, 30*time.Second)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, 10*time.Second, time.Millisecond)
	_, err := Health(ctx, srv.Conns()[0])
	assert.ErrorIs(t, err, ErrUnknownMethod)
	_, err = Health(ctx, nil)
	assert.ErrorIs(t, err, ErrDeadReference, "no connection: a remote.Client's Conn while it is down")
}

// gatedListener is a client-side object whose Notify runs until released.
type gatedListener struct {
	remoteable.Referenceable
	started chan struct{}
	release chan struct{}
}

func (l *gatedListener) Notify(msg string) (string, error) {
	l.started <- struct{}{}
	<-l.release
	return "ack:" + msg, nil
}

// TestShutdownLetsCallbacksFinish drains a server whose handler is in the
// middle of a callback to its caller: the callback goes on, the handler
// answers, and only then does the server close.
func TestShutdownLetsCallbacksFinish(t *testing.T) {
	leakcheck.Check(t)
	srv, addr, _ := drainServer(t, newService())
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	l := &gatedListener{started: make(chan struct{}, 1), release: make(chan struct{})}
	type result struct {
		got string
		err error
	}
	res := make(chan result, 1)
	go func() {
		got, err := Call[string](ctx, c.Root(), "Callback", l, "hi")
		res <- result{got, err}
	}()
	waitClosed(t, l.started, "the callback")
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitClosed(t, c.GoingAway(), "the going-away notice")
	close(l.release)
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, "ack:hi", r.got)
	require.NoError(t, <-shut)
}

// TestShutdownOfAPeerThatNeverAnswers drains a server whose peer never
// answers the going-away notice (it reads nothing): with no call running,
// Shutdown ends at its deadline without reporting calls cut.
func TestShutdownOfAPeerThatNeverAnswers(t *testing.T) {
	leakcheck.Check(t)
	srv, addr, _ := drainServer(t, newService())
	rawConnect(t, addr, true)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, 10*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	assert.NoError(t, srv.Shutdown(ctx))
	assert.Empty(t, srv.Conns())
}

// nestingListener answers a callback by calling its caller back with the
// callback's context (a call nested in the server's), once released, and
// also makes a call of its own that is not nested.
type nestingListener struct {
	remoteable.Referenceable
	root    *Ref
	started chan struct{}
	release chan struct{}
	other   chan error // the result of the call that is not nested
}

func (l *nestingListener) Notify(ctx context.Context, msg string) (string, error) {
	l.started <- struct{}{}
	<-l.release
	l.other <- l.root.Call(context.Background(), "Add", nil, 1, 2)
	var got string
	err := l.root.Call(ctx, "Concat", &got, msg, "!")
	return "ack:" + got, err
}

// TestShutdownAdmitsCallsNestedInItsCallbacks drains a server whose
// handler is in the middle of a callback: the call the peer makes from
// inside that callback, with the callback's context, carries the id of
// the call it is nested in, so the draining server tells it from a new
// call and runs it (the handler waits for it); a call the peer makes on
// its own meanwhile is refused with ErrGoingAway.
func TestShutdownAdmitsCallsNestedInItsCallbacks(t *testing.T) {
	leakcheck.Check(t)
	srv, addr, _ := drainServer(t, newService())
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	l := &nestingListener{root: c.Root(), started: make(chan struct{}, 1), release: make(chan struct{}), other: make(chan error, 1)}
	res := make(chan error, 1)
	var got string
	go func() { res <- c.Root().Call(ctx, "Callback", &got, l, "hi") }()
	waitClosed(t, l.started, "the callback")
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	waitClosed(t, c.GoingAway(), "the going-away notice")
	close(l.release)
	require.NoError(t, <-res, "the nested call ran")
	assert.Equal(t, "ack:hi!", got)
	require.ErrorIs(t, <-l.other, ErrGoingAway, "a call that is not nested is refused")
	require.NoError(t, <-shut)
}

// TestNestedInExtensionBytes pins the bytes of ext key 4 as
// docs/protocol.md §6 gives them (a1 04 07), and reads them back.
func TestNestedInExtensionBytes(t *testing.T) {
	b := appendCallExt(nil, callExt{nestedIn: 7})
	assert.Equal(t, "a10407", hex.EncodeToString(b))
	r := cborx.NewReader(b)
	x, err := parseCallExt(&r)
	require.NoError(t, err)
	assert.Equal(t, uint64(7), x.nestedIn)
	r = cborx.NewReader([]byte{0xa1, 0x04, 0x61, 0x78}) // a text string: malformed
	_, err = parseCallExt(&r)
	assert.ErrorIs(t, err, errMalformedExt)
}

// TestNestedInNamesOnlyACallback: a peer cannot get a new call admitted
// during a drain by naming, in ext key 4, a call of the server's that no
// handler made: here the going-away notice itself, which the peer holds
// unanswered. The call is refused with ErrGoingAway; the call in flight
// still finishes.
func TestNestedInNamesOnlyACallback(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr, _ := drainServer(t, svc)
	p := rawConnect(t, addr, true)
	p.call(1, 0, "Block")
	waitStarted(t, svc)

	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	body, err := p.fr.Next()
	require.NoError(t, err)
	m, err := parseMessage(body)
	require.NoError(t, err)
	in, err := parseCall(&m)
	require.NoError(t, err)
	require.Equal(t, GoingAwayMethod, string(in.method))

	p.sendMsg(func(e *encoder) {
		e.buf = appendCall(e.buf, callHead{id: 2, method: "Add", argc: 2, ext: true})
		require.NoError(t, e.any(1))
		require.NoError(t, e.any(2))
		e.buf = appendCallExt(e.buf, callExt{nestedIn: in.id})
	})
	typ, carried, err := p.next()
	require.NoError(t, err)
	require.Equal(t, uint64(msgFail), typ, "a call nested in the going-away notice ran")
	assert.ErrorIs(t, carried, ErrGoingAway)

	p.sendMsg(func(e *encoder) { e.buf = appendReturnHead(e.buf, in.id); e.buf = cborx.AppendNull(e.buf) })
	close(svc.release)
	typ, carried, err = p.next()
	require.NoError(t, err)
	assert.Equal(t, uint64(msgReturn), typ, "the call in flight is answered: %v", carried)
	require.NoError(t, <-shut)
}
