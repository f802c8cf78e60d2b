package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestRefusalsAreLoud: a client with a wrong token prints "authentication
// failed" (not "disconnected") and fails; the server logs the refusal; a
// gateway with a wrong token logs the upstream's refusal and answers its
// HTTP clients that the server is out of reach because it refused the
// gateway.
func TestRefusalsAreLoud(t *testing.T) {
	leakcheck.Check(t)
	serverOut, _ := background(t, "serve", "-listen", "127.0.0.1:0", "-token", "right")
	addr := waitFor(t, serverOut, `serving on tcp://(\S+) `)[1]

	_, stderr, code := tether("call", "-token", "wrong", "-timeout", "30s", addr, "users.Get", "alice")
	assert.NotEqual(t, exitOK, code)
	assert.Contains(t, stderr, "authentication failed", stderr)
	assert.NotContains(t, stderr, "disconnected", "a refusal is not an outage")
	waitFor(t, serverOut, `level=WARN msg="tether: handshake refused".*authentication failed`)

	out, stop := background(t, "gateway", "-upstream", addr, "-token", "wrong", "-listen", "127.0.0.1:0")
	url := "http://" + waitFor(t, out, `gateway on http://(\S+),`)[1] + "/"
	waitFor(t, out, `level=WARN msg="tether: the server refused this client".*authentication failed`)

	body := `{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}`
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var r struct {
		Error struct {
			Code    int
			Message string
			Data    struct{ Name string }
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	resp.Body.Close()
	assert.Equal(t, -32004, r.Error.Code)
	assert.Equal(t, "tether.auth-failed", r.Error.Data.Name)
	assert.Contains(t, r.Error.Message, "authentication failed")
	http.DefaultClient.CloseIdleConnections()
	assert.Equal(t, exitOK, stop())
}
