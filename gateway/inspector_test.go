package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// fetched is an HTTP answer, read whole.
type fetched struct {
	status int
	header http.Header
	body   string
}

// fetch sends a request without following redirects and reads the answer.
func (e *env) fetch(t *testing.T, method, path string) fetched {
	t.Helper()
	req, err := http.NewRequestWithContext(testkit.Ctx(t, time.Minute), method, e.http.URL+path, nil)
	require.NoError(t, err)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	c.CloseIdleConnections()
	return fetched{resp.StatusCode, resp.Header, string(body)}
}

// TestInspectorServesItsFiles: the page, its script and its style sheet
// with their content types and a policy that lets them load nothing from
// elsewhere, without the bearer token the JSON-RPC requests still need.
func TestInspectorServesItsFiles(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithInspector(), gateway.WithToken("secret"))
	for _, f := range []struct{ path, ctype, contains string }{
		{gateway.InspectorPath, "text/html; charset=utf-8", "<title>Tether inspector</title>"},
		{gateway.InspectorPath + "index.html", "text/html; charset=utf-8", "<title>Tether inspector</title>"},
		{gateway.InspectorPath + "app.js", "text/javascript; charset=utf-8", "EventSource"},
		{gateway.InspectorPath + "style.css", "text/css; charset=utf-8", ".watch-panel"},
	} {
		got := e.fetch(t, http.MethodGet, f.path)
		require.Equal(t, http.StatusOK, got.status, f.path)
		assert.Equal(t, f.ctype, got.header.Get("Content-Type"), f.path)
		assert.Equal(t, "nosniff", got.header.Get("X-Content-Type-Options"), f.path)
		assert.Contains(t, got.header.Get("Content-Security-Policy"), "default-src 'none'", f.path)
		assert.Contains(t, got.body, f.contains, f.path)
		head := e.fetch(t, http.MethodHead, f.path)
		assert.Equal(t, http.StatusOK, head.status, f.path)
		assert.Empty(t, head.body, f.path)
	}
	status, _ := e.post(t, `{"jsonrpc":"2.0","id":1,"method":"rpc.managers"}`)
	assert.Equal(t, http.StatusUnauthorized, status, "the API still needs the token")
}

// TestInspectorPageLoadsOnlyItsOwnFiles: every file the page names is one
// the gateway serves, and none is elsewhere (the page works without the
// net, and the policy would block it anyway).
func TestInspectorPageLoadsOnlyItsOwnFiles(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithInspector())
	page := e.fetch(t, http.MethodGet, gateway.InspectorPath).body
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	require.NotEmpty(t, refs)
	for _, m := range refs {
		ref := m[1]
		assert.NotContains(t, ref, "//", "the page loads %s from elsewhere", ref)
		assert.Equal(t, http.StatusOK, e.fetch(t, http.MethodGet, gateway.InspectorPath+ref).status, ref)
	}
	for _, f := range []string{"app.js", "style.css"} {
		body := e.fetch(t, http.MethodGet, gateway.InspectorPath+f).body
		assert.NotRegexp(t, `https?://`, body, "%s names a URL elsewhere", f)
		assert.NotContains(t, body, "@import", f)
	}
}

// TestInspectorRefusals: an unknown file is 404, a path that climbs out is
// 404, another method than GET or HEAD is 405 with Allow, and /ui
// redirects to /ui/.
func TestInspectorRefusals(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithInspector())
	for _, p := range []string{"nope.js", "ui/app.js", "..%2Finspector.go", "%2e%2e/inspector.go", "app.js/", "index.htm"} {
		got := e.fetch(t, http.MethodGet, gateway.InspectorPath+p)
		assert.Equal(t, http.StatusNotFound, got.status, p)
		assert.NotContains(t, got.body, "package gateway", p)
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		got := e.fetch(t, m, gateway.InspectorPath)
		assert.Equal(t, http.StatusMethodNotAllowed, got.status, m)
		assert.Equal(t, "GET, HEAD", got.header.Get("Allow"), m)
	}
	got := e.fetch(t, http.MethodGet, "/ui")
	assert.Equal(t, http.StatusMovedPermanently, got.status)
	assert.Equal(t, "ui/", got.header.Get("Location"), "relative, so that a prefix the gateway is mounted under stays")
}

// TestNoInspectorWithoutTheOption: without WithInspector, /ui/ is an
// ordinary path of the JSON-RPC endpoint, which wants a POST.
func TestNoInspectorWithoutTheOption(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	got := e.fetch(t, http.MethodGet, gateway.InspectorPath)
	assert.Equal(t, http.StatusMethodNotAllowed, got.status)
	assert.Equal(t, http.MethodPost, got.header.Get("Allow"))
	assert.False(t, strings.Contains(got.body, "<html"), got.body)
	status, v := e.post(t, `{"jsonrpc":"2.0","id":1,"method":"rpc.managers"}`)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, []any{"shop"}, v.(map[string]any)["result"])
}

// TestInspectorUnderAPrefix: mounted under a path prefix, the page, its
// redirect and the JSON-RPC endpoint it posts to ("../" from the page) all
// keep the prefix.
func TestInspectorUnderAPrefix(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithInspector())
	mux := http.NewServeMux()
	mux.Handle("/tether/", http.StripPrefix("/tether", e.gw))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.http = srv

	page := e.fetch(t, http.MethodGet, "/tether/ui/")
	require.Equal(t, http.StatusOK, page.status)
	assert.Contains(t, page.body, "Tether inspector")
	redirect := e.fetch(t, http.MethodGet, "/tether/ui")
	require.Equal(t, http.StatusMovedPermanently, redirect.status)
	base, err := url.Parse(srv.URL + "/tether/ui")
	require.NoError(t, err)
	loc, err := url.Parse(redirect.header.Get("Location"))
	require.NoError(t, err)
	assert.Equal(t, "/tether/ui/", base.ResolveReference(loc).Path)
	pageURL, err := url.Parse(srv.URL + "/tether/ui/")
	require.NoError(t, err)
	rpcURL := pageURL.ResolveReference(&url.URL{Path: "../"})
	assert.Equal(t, "/tether/", rpcURL.Path, "where the page posts its calls")
	resp, err := http.Post(rpcURL.String(), "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"rpc.managers"}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Contains(t, string(body), `"result":["shop"]`)
}
