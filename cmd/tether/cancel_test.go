package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
)

// jobs has a method whose work was cancelled on the server, not by the
// caller.
type jobs struct{}

func (*jobs) Run(ctx context.Context) (int, error) {
	return 0, fmt.Errorf("job 7 was cancelled by an operator: %w", context.Canceled)
}

// TestServerCancellationIsNotAnInterrupt: a method that fails with
// context.Canceled on the server (its own work was cancelled there) makes
// tether call fail with the server's message and exit 1, not claim that
// the command was interrupted (exit 130, "interrupted", the message lost).
func TestServerCancellationIsNotAnInterrupt(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("jobs", &jobs{}))
	_, addr := brokertest.Serve(t, reg)

	_, stderr, code := tether("call", addr, "jobs.Run")
	assert.Equal(t, exitCallFailed, code, stderr)
	assert.Contains(t, stderr, "job 7 was cancelled by an operator")
	assert.NotContains(t, stderr, "interrupted")
}
