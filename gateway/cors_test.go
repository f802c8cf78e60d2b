package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// send sends a request of method to path with header pairs and returns
// the response, its body closed.
func (e *env) send(t *testing.T, ctx context.Context, method, path, body string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.http.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// TestCORS: with WithCORS, pages from the listed origins get CORS headers
// on every route and their preflights answered; others get none, and a
// 403 to their preflight. Without it, nothing changes.
func TestCORS(t *testing.T) {
	leakcheck.Check(t)
	const app, other = "https://app.example.com", "https://evil.example.net"
	e := newEnv(t, nil, gateway.WithCORS(app, "http://localhost:3000"), gateway.WithToken("s3cret"))
	ctx := testkit.Ctx(t, time.Minute)

	for _, path := range []string{"/", gateway.WatchPath, gateway.HealthPath} {
		resp := e.send(t, ctx, http.MethodOptions, path, "", "Origin", app,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type")
		assert.Equal(t, http.StatusNoContent, resp.StatusCode, path)
		assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"), path)
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "POST", path)
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Methods"), "GET", path)
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Authorization", path)
		assert.Contains(t, resp.Header.Get("Access-Control-Allow-Headers"), "Content-Type", path)
		assert.Contains(t, resp.Header.Values("Vary"), "Origin", path)

		resp = e.send(t, ctx, http.MethodOptions, path, "", "Origin", other, "Access-Control-Request-Method", "POST")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
		assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), path)
	}

	// The requests themselves: the origin is echoed to a listed one only;
	// the answer is the same otherwise (the browser hides it).
	body := `{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,2]}`
	auth := []string{"Content-Type", "application/json", "Authorization", "Bearer s3cret"}
	resp := e.send(t, ctx, http.MethodPost, "/", body, append(auth, "Origin", app)...)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = e.send(t, ctx, http.MethodPost, "/", body, append(auth, "Origin", other)...)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = e.send(t, ctx, http.MethodPost, "/", body, "Content-Type", "application/json", "Origin", app)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "CORS does not replace the token")
	assert.Equal(t, app, resp.Header.Get("Access-Control-Allow-Origin"), "so that the page can read why")
	resp = e.send(t, ctx, http.MethodGet, gateway.HealthPath, "", "Origin", "http://localhost:3000")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "http://localhost:3000", resp.Header.Get("Access-Control-Allow-Origin"))

	s := e.watch(t, "shop.Model", "", "Authorization", "Bearer s3cret", "Origin", app)
	assert.Equal(t, app, s.resp.Header.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "snapshot", s.next(t).Kind)
	s.close()
}

// TestCORSAnyOriginAndOff: "*" allows every origin; without WithCORS an
// OPTIONS request is a method the gateway does not take, and no answer
// carries CORS headers.
func TestCORSAnyOriginAndOff(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	star := newEnv(t, nil, gateway.WithCORS("*"))
	resp := star.send(t, ctx, http.MethodOptions, "/", "", "Origin", "https://anywhere.example", "Access-Control-Request-Method", "POST")
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, "https://anywhere.example", resp.Header.Get("Access-Control-Allow-Origin"))

	off := newEnv(t, nil)
	resp = off.send(t, ctx, http.MethodOptions, "/", "", "Origin", "https://anywhere.example", "Access-Control-Request-Method", "POST")
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = off.send(t, ctx, http.MethodGet, gateway.HealthPath, "", "Origin", "https://anywhere.example")
	assert.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
}

// TestCORSOptionsAreChecked: an origin list that cannot work is refused.
func TestCORSOptionsAreChecked(t *testing.T) {
	for _, origins := range [][]string{nil, {""}, {"app.example.com"}, {"https://app.example.com/path"}, {"https://app.example.com", "*.example.com"}} {
		_, err := gateway.New(nil, gateway.WithCORS(origins...))
		assert.ErrorIs(t, err, broker.ErrInvalidOption, "%q", origins)
	}
}
