package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// getPage GETs url and returns the status, the content type and the body.
func getPage(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// TestUICommand: tether ui prints the inspector's address and serves the
// page there, beside the JSON-RPC endpoint; tether gateway -ui does the
// same, and tether gateway alone serves no page.
func TestUICommand(t *testing.T) {
	leakcheck.Check(t)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	addr, _ := serve(t)
	for _, args := range [][]string{{"ui"}, {"gateway", "-ui"}} {
		out, stop := background(t, append(args, "-upstream", addr, "-listen", "127.0.0.1:0")...)
		url := "http://" + waitFor(t, out, `inspector on http://(\S+/ui/) \(open it in a browser\)`)[1]
		status, ctype, body := getPage(t, url)
		assert.Equal(t, http.StatusOK, status, args)
		assert.Equal(t, "text/html; charset=utf-8", ctype, args)
		assert.Contains(t, body, "Tether inspector", args)
		status, ctype, _ = getPage(t, url+"app.js")
		assert.Equal(t, http.StatusOK, status, args)
		assert.Equal(t, "text/javascript; charset=utf-8", ctype, args)
		resp, err := http.Post(strings.TrimSuffix(url, "ui/"), "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"rpc.managers"}`))
		require.NoError(t, err)
		rpc, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, string(rpc), `"users"`, args)
		http.DefaultClient.CloseIdleConnections()
		assert.Equal(t, exitOK, stop(), args)
	}

	out, stop := background(t, "gateway", "-upstream", addr, "-listen", "127.0.0.1:0")
	url := "http://" + waitFor(t, out, `gateway on http://(\S+),`)[1] + "/ui/"
	status, _, _ := getPage(t, url)
	assert.Equal(t, http.StatusMethodNotAllowed, status, "no page without -ui")
	assert.NotContains(t, out.String(), "inspector")
	http.DefaultClient.CloseIdleConnections()
	assert.Equal(t, exitOK, stop())
}

// TestUIUsage: tether ui's own help, and usage errors with exit 2.
func TestUIUsage(t *testing.T) {
	leakcheck.Check(t)
	_, errOut, code := tether("ui", "-h")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, errOut, "Usage: tether ui -upstream ADDR")
	assert.Contains(t, errOut, "-http-token")
	assert.NotContains(t, errOut, "Usage: tether gateway")
	out, _, code := tether("help", "ui")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "Usage: tether ui")
	_, errOut, code = tether("ui")
	assert.Equal(t, exitUsage, code, "no upstream")
	assert.Contains(t, errOut, "Usage: tether ui")
	_, _, code = tether("ui", "-upstream", "127.0.0.1:1", "-no-such-flag")
	assert.Equal(t, exitUsage, code)
	out, _, _ = tether("help")
	assert.Contains(t, out, "tether ui ")
	_, errOut, _ = tether("gateway", "-h")
	assert.Contains(t, errOut, "-ui")
}
