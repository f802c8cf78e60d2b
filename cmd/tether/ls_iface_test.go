package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// LsStocker is an interface with a stub registered by hand, as tether gen
// registers one.
type LsStocker interface {
	Stock(ctx context.Context) (int, error)
}

type lsStockerStub struct{ c remoteable.Caller }

func (s *lsStockerStub) TetherCaller() remoteable.Caller { return s.c }
func (s *lsStockerStub) Stock(ctx context.Context) (int, error) {
	var r int
	err := s.c.Call(ctx, "Stock", &r)
	return r, err
}

func init() {
	remoteable.RegisterStub[LsStocker](func(c remoteable.Caller) LsStocker { return &lsStockerStub{c} },
		"Stock(ctx context.Context) (int, error)")
}

// store has Stock, so it implements LsStocker, and a method that cannot
// be called remotely.
type store struct{}

func (*store) Stock(ctx context.Context) (int, error) { return 3, nil }
func (*store) Reset()                                 {}

// TestLsShowsInterfaces checks that tether ls names the registered
// interfaces a manager implements, with their methods in Go syntax.
func TestLsShowsInterfaces(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("inventory", &store{}))
	_, addr := brokertest.Serve(t, reg)

	out, _, code := tether("ls", addr)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "\ninventory implements main.LsStocker:\n  Stock(ctx context.Context) (int, error)\n")

	out, _, code = tether("ls", addr, "inventory")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "  (not callable) Reset: it returns nothing; a remote method returns error or (R, error)\n"+
		"inventory implements main.LsStocker:\n"+
		"  Stock(ctx context.Context) (int, error)\n")
}
