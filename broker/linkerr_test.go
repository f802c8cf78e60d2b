package broker

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/linkwait"
	"github.com/tether-go/tether/internal/testkit"
)

// TestConnectionLostNamesTheCallAndThePeer: a call in flight when its
// connection is reset fails with ErrConnectionLost, and its message says
// which method was in flight, to which peer (by its announced name and its
// address), that it may or may not have run, and why the connection ended,
// with one "tether:" at its start. A call made afterwards names its method
// as not sent.
func TestConnectionLostNamesTheCallAndThePeer(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	_, addr := startServer(t, svc, WithName("origin"))
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.Addr())
	ctx := testkit.Ctx(t, 30*time.Second)

	inflight := make(chan error, 1)
	go func() { _, err := Call[string](ctx, cl.Root(), "Block"); inflight <- err }()
	require.Equal(t, "Block", <-svc.started)
	proxy.Reset()
	err = <-inflight
	require.ErrorIs(t, err, ErrConnectionLost)
	require.ErrorIs(t, err, ErrDeadReference)
	msg := err.Error()
	t.Logf("the caller sees: %v", msg)
	assert.True(t, strings.HasPrefix(msg, "tether: connection lost during call: "), msg)
	assert.Equal(t, 1, strings.Count(msg, "tether:"), "one prefix: %s", msg)
	assert.Contains(t, msg, `"Block" was in flight to peer "origin" at `+proxy.Addr())
	assert.Contains(t, msg, "may or may not have run")
	<-cl.Done()

	err = cl.Root().Call(ctx, "Add", nil, 1, 2)
	require.ErrorIs(t, err, ErrDeadReference)
	assert.NotErrorIs(t, err, ErrConnectionLost)
	msg = err.Error()
	assert.Contains(t, msg, `"Add" was not sent: the connection to peer "origin" at `+proxy.Addr())
	assert.Equal(t, 1, strings.Count(msg, "tether:"), "one prefix: %s", msg)
}

// linkWaiter reports whether its handler's context asks to wait for links.
type linkWaiter struct{}

func (linkWaiter) Waits(ctx context.Context) (bool, error) { return linkwait.Wanted(ctx), nil }

// TestWaitForLinkTravelsWithTheCall: a call made under a context that
// waits for links gives its handler a context that waits for links too
// (the call extension's key 2), and only such a call does.
func TestWaitForLinkTravelsWithTheCall(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, linkWaiter{}, nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		waits, err := Call[bool](ctx, cl.Root(), "Waits")
		require.NoError(t, err)
		assert.False(t, waits, "a plain call does not wait")
		waits, err = Call[bool](linkwait.With(ctx), cl.Root(), "Waits")
		require.NoError(t, err)
		assert.True(t, waits, "the wish travels with the call")
	})
}

// TestWaitLinkExtensionOnTheWire: key 2 of a call's extension map is a
// boolean that a handler sees as the caller's wish to wait for links,
// next to keys the callee does not know; any other value is a protocol
// violation.
func TestWaitLinkExtensionOnTheWire(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, linkWaiter{})
	p := rawConnect(t, addr, true)
	ask := func(id uint64, wait any) {
		p.sendMsg(func(e *encoder) {
			e.buf = appendCallHeadExt(e.buf, id, 0, "Waits", 0, 0)
			e.buf = cborx.AppendMap(e.buf, 2)
			e.buf = cborx.AppendUint(e.buf, 9)
			e.buf = cborx.AppendText(e.buf, "future")
			e.buf = cborx.AppendUint(e.buf, extWaitLink)
			require.NoError(t, e.any(wait))
		})
	}
	answer := func(id uint64) bool {
		body, err := p.fr.Next()
		require.NoError(t, err)
		r := cborx.NewReader(body)
		_, err = r.ReadArray()
		require.NoError(t, err)
		typ, _ := r.ReadUint()
		require.Equal(t, uint64(msgReturn), typ)
		got, _ := r.ReadUint()
		require.Equal(t, id, got)
		h, err := r.ReadHead()
		require.NoError(t, err)
		return h.Major == cborx.MajorSimple && h.AI == cborx.SimpleTrue
	}
	ask(1, true)
	assert.True(t, answer(1))
	ask(2, false)
	assert.False(t, answer(2))

	ask(3, 1)
	bye := p.closedWith()
	require.ErrorIs(t, bye, ErrProtocol)
	assert.Contains(t, bye.Error(), "key 2 a boolean")
}
