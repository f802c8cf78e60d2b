package cache_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// Views declares its models as interfaces: the manager returns its own
// models, and the stub (written by hand here, as tether gen writes it)
// receives mirrors.
type Views interface {
	Items(ctx context.Context) (cache.View[string, Item], error)
	Total(ctx context.Context) (cache.ValueView[int], error)
}

type viewsStub struct{ c remoteable.Caller }

func (s *viewsStub) TetherCaller() remoteable.Caller { return s.c }
func (s *viewsStub) Items(ctx context.Context) (cache.View[string, Item], error) {
	var r *cache.Mirror[string, Item]
	if err := s.c.Call(ctx, "Items", &r); err != nil {
		return nil, err
	}
	return r, nil
}
func (s *viewsStub) Total(ctx context.Context) (cache.ValueView[int], error) {
	var r *cache.ValueMirror[int]
	if err := s.c.Call(ctx, "Total", &r); err != nil {
		return nil, err
	}
	return r, nil
}

func init() {
	remoteable.RegisterStub[Views](func(c remoteable.Caller) Views { return &viewsStub{c} })
}

// views is the manager behind Views.
type views struct {
	remoteable.Referenceable
	st *store
}

func (v *views) Items(context.Context) (cache.View[string, Item], error) { return v.st.m, nil }
func (v *views) Total(context.Context) (cache.ValueView[int], error)     { return v.st.v, nil }

// watchViews is code written against the interface: it reads both models
// and waits until each has seen a change, then says what it saw.
func watchViews(ctx context.Context, vs Views, change func()) (string, error) {
	items, err := vs.Items(ctx)
	if err != nil {
		return "", err
	}
	total, err := vs.Total(ctx)
	if err != nil {
		return "", err
	}
	got := make(chan string, 2)
	stop1 := items.Changes().Connect(func(ev cache.Change[string, Item]) { got <- fmt.Sprintf("item %s=%d", ev.Key, ev.Value.Count) })
	defer stop1()
	stop2 := total.Changes().Connect(func(ev cache.Change[struct{}, int]) { got <- fmt.Sprintf("total=%d", ev.Value) })
	defer stop2()
	before := fmt.Sprintf("len %d, total %d, stale %v", items.Len(), total.Get(), items.Stale() || total.Stale())
	change()
	seen := map[string]bool{}
	for len(seen) < 2 {
		select {
		case s := <-got:
			seen[s] = true
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return fmt.Sprintf("%s; then %v", before, seen), nil
}

// TestModelsInInterfaces: a method declared to return cache.View (or
// cache.ValueView) returns the local model on the server and a mirror
// through the stub, and code written against the interface reads the same
// either way.
func TestModelsInInterfaces(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	st := newStore()
	require.NoError(t, st.m.Set("a", Item{Count: 1}))
	local := &views{st: st}
	reg := registry.New()
	require.NoError(t, reg.Register("views", local))
	_, addr := brokertest.Serve(t, reg)

	n := 1
	change := func() {
		n++
		require.NoError(t, st.m.Set("b", Item{Count: n}))
		require.NoError(t, st.v.Set(n))
	}
	lgot, err := watchViews(ctx, local, change)
	require.NoError(t, err)
	assert.Equal(t, "len 1, total 0, stale false; then map[item b=2:true total=2:true]", lgot)

	conn, err := broker.Dial(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(); <-conn.Done() })
	var vref *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &vref, "views"))
	direct, err := remoteable.As[Views](vref)
	require.NoError(t, err)
	dgot, err := watchViews(ctx, direct, change)
	require.NoError(t, err)
	assert.Equal(t, "len 2, total 2, stale false; then map[item b=3:true total=3:true]", dgot)

	cl := connect(t, addr)
	lasting, err := registry.LookupAs[Views](ctx, cl.Registry(), "views")
	require.NoError(t, err)
	rgot, err := watchViews(ctx, lasting, change)
	require.NoError(t, err)
	assert.Equal(t, "len 2, total 3, stale false; then map[item b=4:true total=4:true]", rgot)
}
