package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

// inventory has one remote method and two that cannot be called remotely.
type inventory struct{}

func (*inventory) Count(ctx context.Context) (int, error) { return 3, nil }
func (*inventory) Helper() (int, string)                  { return 0, "" }
func (*inventory) Reset()                                 {}

// TestLsShowsSkippedMethods checks that tether ls names the exported
// methods of a manager that cannot be called remotely, with the reason.
func TestLsShowsSkippedMethods(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("inventory", &inventory{}))
	_, addr := brokertest.Serve(t, reg)

	out, _, code := tether("ls", addr)
	assert.Equal(t, exitOK, code)
	assert.Regexp(t, `(?m)^inventory\s+\*main\.inventory\s+1 methods, 2 not callable$`, out)

	out, _, code = tether("ls", addr, "inventory")
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "inventory (*main.inventory)\n"+
		"  Count() (int, error)\n"+
		"  (not callable) Helper: its second result is string, not error; a remote method returns error or (R, error)\n"+
		"  (not callable) Reset: it returns nothing; a remote method returns error or (R, error)\n", out)
}
