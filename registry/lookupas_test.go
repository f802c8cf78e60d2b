package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Counter is an interface with a hand-written stub, as tether gen writes
// it; Uncounted has none.
type (
	Counter interface {
		Count(ctx context.Context) (int, error)
	}
	Uncounted interface {
		Uncount(ctx context.Context) error
	}
)

type counterStub struct{ c remoteable.Caller }

func (s *counterStub) TetherCaller() remoteable.Caller { return s.c }
func (s *counterStub) Count(ctx context.Context) (int, error) {
	var r int
	err := s.c.Call(ctx, "Count", &r)
	return r, err
}

func init() {
	remoteable.RegisterStub[Counter](func(c remoteable.Caller) Counter { return &counterStub{c} },
		"Count(ctx context.Context) (int, error)")
}

// TestLookupAs: the same call gives a typed manager from a local registry
// (the manager itself) and from a remote one (a stub over a lasting
// reference), and says what is wrong otherwise.
func TestLookupAs(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	reg := registry.New()
	u := &users{}
	require.NoError(t, reg.Register("users", u))

	local, err := registry.LookupAs[Counter](ctx, reg, "users")
	require.NoError(t, err)
	assert.Same(t, u, local)

	_, addr := brokertest.Serve(t, reg)
	cl, err := remote.Connect(ctx, "tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	far, err := registry.LookupAs[Counter](ctx, cl.Registry(), "users")
	require.NoError(t, err)
	require.IsType(t, &counterStub{}, far)
	assert.IsType(t, &remote.Ref{}, far.(remoteable.Stub).TetherCaller())
	n, err := far.Count(ctx)
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	_, err = registry.LookupAs[Counter](ctx, reg, "nobody")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = registry.LookupAs[Counter](ctx, cl.Registry(), "nobody")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	_, err = registry.LookupAs[Uncounted](ctx, reg, "users")
	assert.ErrorIs(t, err, remoteable.ErrNotCaller, "a local manager that is not a T")
	assert.ErrorContains(t, err, `manager "users": `)
	_, err = registry.LookupAs[Uncounted](ctx, cl.Registry(), "users")
	assert.ErrorIs(t, err, remoteable.ErrNoStub)
	assert.ErrorContains(t, err, "run `tether gen -type Uncounted`")
}
