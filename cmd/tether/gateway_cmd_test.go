package main

import (
	"bufio"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
)

// TestGatewayCommandCORSAndWatch: -cors answers the listed origin's
// preflight; /watch streams the demo's gauges; interrupting the command
// ends the stream with an error event rather than waiting for the client.
func TestGatewayCommandCORSAndWatch(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t, "-tick", "50ms")
	out, stop := background(t, "gateway", "-upstream", addr, "-listen", "127.0.0.1:0", "-cors", "https://app.example.com,http://localhost:3000")
	base := "http://" + waitFor(t, out, `gateway on http://(\S+),`)[1]
	defer http.DefaultClient.CloseIdleConnections()

	req, err := http.NewRequest(http.MethodOptions, base+"/", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Access-Control-Request-Method", "POST")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "http://localhost:3000", resp.Header.Get("Access-Control-Allow-Origin"))

	resp, err = http.Get(base + "/watch?method=gauges.Model")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := bufio.NewReader(resp.Body)
	first, err := lines.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "event: snapshot\n", first)

	stopped := make(chan int, 1)
	go func() { stopped <- stop() }()
	var last string
	for {
		line, err := lines.ReadString('\n')
		if err != nil {
			break
		}
		if strings.HasPrefix(line, "event: ") {
			last = line
		}
	}
	assert.Equal(t, "event: error\n", last, "the stream ends with a reason")
	assert.Equal(t, exitOK, <-stopped)
	// The access log, on stderr at info: the preflight, then the watch.
	assert.Regexp(t, `level=INFO msg="tether gateway: request" method=OPTIONS path=/ status=204 `, out.String())
	assert.Regexp(t, `level=INFO msg="tether gateway: request" method=GET path=/watch status=200 duration=\S+ remote=127\.0\.0\.1:\d+ rpc=gauges.Model code=-32001`, out.String())
}

// TestGatewayCommandTimeoutDefault: tether gateway's -timeout defaults to
// the gateway's own default, as -h and the docs say.
func TestGatewayCommandTimeoutDefault(t *testing.T) {
	out, errOut, _ := tether("gateway", "-h")
	help := out + errOut
	assert.Regexp(t, `-timeout duration\n\s+give up on each call after this long \(default `+regexp.QuoteMeta(gateway.DefaultTimeout.String())+`\)`, help)
	assert.Equal(t, 30*time.Second, gateway.DefaultTimeout, "docs/protocol.md and the guide say 30 s")
}
