package broker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// fakeGate is a reply gate (seams.go) that counts what the broker asks it.
type fakeGate struct {
	remoteable.Referenceable
	marks, waits atomic.Int32
}

func (g *fakeGate) ReplyMark(target any) any {
	if _, self := target.(*fakeGate); self {
		return nil
	}
	g.marks.Add(1)
	return true
}

func (g *fakeGate) ReplyWait(ctx context.Context, mark any) { g.waits.Add(1) }

// gateService hands out its gate by reference.
type gateService struct{ gate *fakeGate }

func (s *gateService) Gate() (*fakeGate, error)  { return s.gate, nil }
func (s *gateService) Add(x, y int) (int, error) { return x + y, nil }

// TestReplyGatesFollowTheirExports: an export that is a reply gate is
// asked around every handler on its connection while the peer holds it,
// no longer once the peer released it, and the connection forgets it when
// it ends (a dead connection still reachable, from a Ref say, kept every
// gate it had, and through a subscription its feed: the process-wide hook
// this replaced forgot a subscription when it ended).
func TestReplyGatesFollowTheirExports(t *testing.T) {
	leakcheck.Check(t)
	svc := &gateService{gate: &fakeGate{}}
	srv, addr := startServer(t, svc)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	gate, err := Call[*Ref](ctx, c.Root(), "Gate")
	require.NoError(t, err)
	n, err := Call[int](ctx, c.Root(), "Add", 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	assert.Equal(t, int32(1), svc.gate.marks.Load(), "marked before the handler ran")
	assert.Equal(t, int32(1), svc.gate.waits.Load(), "waited on before the reply went")

	gate.Release()
	server := srv.Conns()[0]
	testkit.Eventually(t, "the server drops the released gate", func() bool { return server.Stats().Exports == 1 })
	_, err = Call[int](ctx, c.Root(), "Add", 1, 2)
	require.NoError(t, err)
	assert.Equal(t, int32(1), svc.gate.marks.Load(), "a released gate is not asked any more")

	_, err = Call[*Ref](ctx, c.Root(), "Gate")
	require.NoError(t, err)
	require.Equal(t, int32(1), server.refs.gates.n.Load())
	require.NoError(t, c.Close())
	<-server.Done()
	assert.Equal(t, int32(0), server.refs.gates.n.Load(), "the ended connection holds no gate")
	server.refs.gates.mu.Lock()
	assert.Empty(t, server.refs.gates.m)
	server.refs.gates.mu.Unlock()
}
