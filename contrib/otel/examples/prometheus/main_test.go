package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestPrometheusDemo runs the demo as `go run` does: its /metrics page
// shows the calls it made, per method and code, on both sides.
func TestPrometheusDemo(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out), "output so far:\n%s", out.String())
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		`# TYPE rpc_server_call_duration_seconds histogram`,
		`rpc_client_call_duration_seconds_count\{rpc_method="Greet",rpc_response_status_code="ok",rpc_service="greeter",rpc_system="tether"\} 5\n`,
		`rpc_server_call_duration_seconds_count\{rpc_method="Greet",rpc_response_status_code="not_found",rpc_service="greeter",rpc_system="tether"\} 1\n`,
		`tether_rpc_server_errors_total\{rpc_method="Greet",rpc_response_status_code="not_found",rpc_service="greeter",rpc_system="tether"\} 1\n`,
		`tether_rpc_client_active_calls\{rpc_method="Greet",rpc_service="greeter",rpc_system="tether"\} 0\n`,
	} {
		assert.Regexp(t, regexp.MustCompile(want), got)
	}
	assert.NotContains(t, got, "_bucket{", "buckets are left out")
}
