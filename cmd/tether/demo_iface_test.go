package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit/brokertest"
)

// TestLsShowsTheDemosInterfaces checks that tether ls, on the demo's
// registry, lists the interfaces its managers implement in Go syntax, as
// docs/guide.md shows them.
func TestLsShowsTheDemosInterfaces(t *testing.T) {
	leakcheck.Check(t)
	reg, _ := newDemo()
	_, addr := brokertest.Serve(t, reg)

	out, _, code := tether("ls", addr)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "gauges implements main.Meter:\n"+
		"  Read(ctx context.Context, name string) (float64, error)\n"+
		"users implements main.Directory:\n"+
		"  Add(ctx context.Context, usr User) error\n"+
		"  Get(ctx context.Context, name string) (User, error)\n"+
		"  Names(ctx context.Context) ([]string, error)\n"+
		"  Remove(ctx context.Context, name string) error\n")
}
