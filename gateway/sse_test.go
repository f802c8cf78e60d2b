package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
	"github.com/tether-go/tether/internal/testkit"
)

// sseEvent is one Server-Sent Event as a client reads it; a comment line
// is an event of kind ":" whose data is the comment.
type sseEvent struct {
	kind, id, data string
}

// stream is a GET /watch being read line by line, as curl -N shows it.
type stream struct {
	resp   *http.Response
	lines  *bufio.Reader
	cancel context.CancelFunc
}

// watchURL is the URL of a watch of method with params (raw JSON, or ""
// for none) and extra query parameters.
func (e *env) watchURL(method, params string, extra ...string) string {
	q := url.Values{"method": {method}}
	if params != "" {
		q.Set("params", params)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return e.http.URL + gateway.WatchPath + "?" + q.Encode()
}

// get sends a GET of u with header pairs; the response is the caller's
// to close, or the stream's.
func (e *env) get(t *testing.T, ctx context.Context, u string, header ...string) *http.Response {
	t.Helper()
	return getWith(t, http.DefaultClient, ctx, u, header...)
}

// getWith is get with client.
func getWith(t *testing.T, client *http.Client, ctx context.Context, u string, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	return resp
}

// watch opens a stream of method's events; it must start.
func (e *env) watch(t *testing.T, method, params string, header ...string) *stream {
	t.Helper()
	return e.watchWith(t, http.DefaultClient, method, params, header...)
}

// watchWith is watch with client.
func (e *env) watchWith(t *testing.T, client *http.Client, method, params string, header ...string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(testkit.Ctx(t, time.Minute))
	resp := getWith(t, client, ctx, e.watchURL(method, params), header...)
	s := &stream{resp: resp, lines: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return s
}

// close goes away, as a client that closes its connection does.
func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// raw reads the next event or comment, as it came.
func (s *stream) raw(t *testing.T) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := s.lines.ReadString('\n')
		require.NoError(t, err, "reading the stream")
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && ev.kind != "":
			return ev
		case line == "":
		case strings.HasPrefix(line, ": "):
			return sseEvent{kind: ":", data: line[2:]}
		case strings.HasPrefix(line, "event: "):
			ev.kind = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			ev.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		default:
			t.Fatalf("not a line of an event stream: %q", line)
		}
	}
}

// next reads the next event, skipping pings, and decodes its data, which
// must be the Event its kind names.
func (s *stream) next(t *testing.T) gateway.Event {
	t.Helper()
	ev := s.raw(t)
	for ev.kind == ":" {
		ev = s.raw(t)
	}
	var out gateway.Event
	require.NoError(t, json.Unmarshal([]byte(ev.data), &out), "data %q", ev.data)
	require.Equal(t, ev.kind, out.Kind, "the event's name is its kind")
	return out
}

// TestWatchStreamFollowsAModelAcrossAnOutage: GET /watch is the stream of
// Watch's events, each numbered and with the JSON tether watch -json
// prints; it stays open through an outage and a server replaced.
func TestWatchStreamFollowsAModelAcrossAnOutage(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	require.NoError(t, e.shop.model.Set("a", 1))
	s := e.watch(t, "shop.Model", "[]")
	assert.Equal(t, "no-cache", s.resp.Header.Get("Cache-Control"))

	first := s.raw(t)
	assert.Equal(t, sseEvent{kind: "snapshot", id: "1", data: fmt.Sprintf(`{"event":"snapshot","epoch":"%s","version":1,"entries":[{"key":"a","value":1}]}`, e.shop.model.Epoch())}, first)
	require.NoError(t, e.shop.model.Set("b", 2))
	assert.Equal(t, sseEvent{kind: "set", id: "2", data: `{"event":"set","version":2,"key":"b","value":2}`}, s.raw(t))

	e.proxy.Refuse(true)
	e.proxy.Reset()
	assert.Equal(t, "stale", s.next(t).Kind)
	require.NoError(t, e.shop.model.Set("c", 3))
	e.shop.model.Delete("a")
	e.proxy.Refuse(false)
	var got []string
	for ev := s.next(t); ev.Kind != "live"; ev = s.next(t) {
		got = append(got, fmt.Sprintf("%s v%d %s", ev.Kind, ev.Version, ev.Key))
	}
	assert.Equal(t, []string{`set v3 "c"`, `delete v4 "a"`}, got, "the changes made during the outage, once each")

	other := newShop()
	require.NoError(t, other.model.Set("z", 26))
	e.proxy.SetTarget(startShop(t, other))
	e.proxy.Reset()
	assert.Equal(t, "stale", s.next(t).Kind)
	reset := s.next(t)
	assert.Equal(t, "reset", reset.Kind)
	assert.Equal(t, other.model.Epoch(), reset.Epoch)
	got = nil
	for ev := s.next(t); ev.Kind != "live"; ev = s.next(t) {
		got = append(got, fmt.Sprintf("%s %s", ev.Kind, ev.Key))
	}
	assert.ElementsMatch(t, []string{`delete "b"`, `delete "c"`, `set "z"`}, got)

	// The client goes away: the gateway drops the subscription (and
	// leakcheck sees that no goroutine of the stream is left).
	s.close()
	testkit.Eventually(t, "the subscription is dropped", func() bool { return other.model.Subscribers() == 0 })
}

// TestWatchStreamRefusals: what keeps a stream from starting is a
// JSON-RPC error with an HTTP status that says what is wrong; the token
// is taken from the header or the access_token query parameter.
func TestWatchStreamRefusals(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithToken("s3cret"))
	ctx := testkit.Ctx(t, time.Minute)
	auth := []string{"Authorization", "Bearer s3cret"}
	for _, c := range []struct {
		what   string
		url    string
		header []string
		status int
		code   int
		name   string
	}{
		{"no token", e.watchURL("shop.Model", ""), nil, http.StatusUnauthorized, gateway.CodeUnauthorized, "tether.unauthorized"},
		{"a wrong token", e.watchURL("shop.Model", "", "access_token", "guess"), nil, http.StatusUnauthorized, gateway.CodeUnauthorized, "tether.unauthorized"},
		{"no method", e.http.URL + gateway.WatchPath, auth, http.StatusBadRequest, gateway.CodeInvalidRequest, "tether.bad-request"},
		{"an unknown method", e.watchURL("shop.Nope", ""), auth, http.StatusNotFound, gateway.CodeMethodNotFound, "tether.unknown-method"},
		{"an unknown manager", e.watchURL("nobody.Model", ""), auth, http.StatusNotFound, gateway.CodeMethodNotFound, "tether.registry.not-found"},
		{"params that are not JSON", e.watchURL("shop.Model", "[1,"), auth, http.StatusBadRequest, gateway.CodeInvalidParams, "tether.bad-arguments"},
		{"too many params", e.watchURL("shop.Model", "[1]"), auth, http.StatusBadRequest, gateway.CodeInvalidParams, "tether.bad-arguments"},
		{"a method that returns no model", e.watchURL("shop.Add", "[1,2]"), auth, http.StatusBadRequest, gateway.CodeInvalidParams, "tether.not-cacheable"},
		{"an unknown handle", e.watchURL("ref-00000000-0000-0000-0000-000000000000.Model", ""), auth, http.StatusNotFound, gateway.CodeMethodNotFound, "tether.unknown-handle"},
	} {
		resp := e.get(t, ctx, c.url, c.header...)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, c.status, resp.StatusCode, "%s: %s", c.what, raw)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"), c.what)
		var body struct {
			ID    any            `json:"id"`
			Error *gateway.Error `json:"error"`
		}
		require.NoError(t, json.Unmarshal(raw, &body), c.what)
		require.NotNil(t, body.Error, c.what)
		assert.Equal(t, c.code, body.Error.Code, "%s: %s", c.what, raw)
		assert.Equal(t, c.name, body.Error.Data.Name, c.what)
		assert.Nil(t, body.ID, c.what)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.watchURL("shop.Model", ""), strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, http.MethodGet, resp.Header.Get("Allow"))

	// The token in the header, then in the query (as a browser's
	// EventSource must send it).
	assert.Equal(t, "snapshot", e.watch(t, "shop.Model", "", auth...).next(t).Kind)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp = e.get(t, ctx, e.watchURL("shop.Model", "", "access_token", "s3cret"))
	defer resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "snapshot", (&stream{resp: resp, lines: bufio.NewReader(resp.Body), cancel: cancel}).next(t).Kind)
}

// TestWatchStreamPingsAndEndsWithAnError: an idle stream gets comment
// lines; a stream that cannot go on (the gateway closed, or the model
// cannot be followed any more) ends with an "error" event saying why.
func TestWatchStreamPingsAndEndsWithAnError(t *testing.T) {
	leakcheck.Check(t)
	defer gateway.SetPingInterval(50 * time.Millisecond)()
	var log logbuf.Buffer
	e := newEnv(t, nil, gateway.WithLogger(slog.New(slog.NewJSONHandler(&log, nil))))
	s := e.watch(t, "shop.Live", "")
	assert.Equal(t, "snapshot", s.raw(t).kind)
	assert.Equal(t, sseEvent{kind: ":", data: "ping"}, s.raw(t))

	// Live is not declared idempotent: after a restart with a new model,
	// the gateway cannot know that calling it again is safe.
	e.proxy.SetTarget(startShop(t, newShop()))
	e.proxy.Reset()
	assert.Equal(t, "stale", s.next(t).Kind)
	ev := s.raw(t)
	for ev.kind == ":" || ev.kind == "live" || ev.kind == "stale" {
		ev = s.raw(t)
	}
	require.Equal(t, "error", ev.kind, ev.data)
	var e1 gateway.Error
	require.NoError(t, json.Unmarshal([]byte(ev.data), &e1))
	assert.Equal(t, "tether.source-lost", e1.Data.Name, ev.data)
	assert.Equal(t, "failed_precondition", e1.Data.Code)
	_, err := s.lines.ReadString('\n')
	assert.ErrorIs(t, err, io.EOF, "the stream ends after the error")
	testkit.Eventually(t, "the end is logged", func() bool { return len(logLines(t, &log, "tether gateway: a watch ended")) == 1 })
	ended := logLines(t, &log, "tether gateway: a watch ended")[0]
	assert.Equal(t, "WARN", ended["level"])
	assert.Equal(t, "shop.Live", ended["rpc"])
	assert.Contains(t, ended["err"], "mirror lost its source")

	s2 := e.watch(t, "shop.Model", "")
	assert.Equal(t, "snapshot", s2.next(t).Kind)
	require.NoError(t, e.gw.Close())
	ev = s2.raw(t)
	for ev.kind == ":" {
		ev = s2.raw(t)
	}
	assert.Equal(t, "error", ev.kind)
	assert.Contains(t, ev.data, `"name":"tether.closed"`)
	assert.Contains(t, ev.data, fmt.Sprintf(`"code":%d`, gateway.CodeUnavailable))
}

// TestWatchStreamResyncsASlowReader: a client that stops reading does not
// make the gateway hold every change for it; when it reads again it gets
// a fresh snapshot, and ends with the model's state.
func TestWatchStreamResyncsASlowReader(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	e.shop.model = cache.NewMap[string, int](cache.WithLogSize(10000))
	client := e.smallBuffers(t)
	s := e.watchWith(t, client, "shop.Model", "")
	assert.Equal(t, "snapshot", s.next(t).Kind)
	// Long keys make the changes six megabytes of events, many times what
	// the buffers on the way hold (with 200-byte keys the reader once
	// received every change and no resync, on a loaded machine).
	key := func(i int) string { return strings.Repeat("k", 1000) + fmt.Sprint(i%100) }
	const changes = 6000
	for i := range changes - 1 {
		require.NoError(t, e.shop.model.Set(key(i), i))
	}
	// The last change through the gateway's own connection: when the call
	// returns, the watch's mirror holds every change (read-your-writes).
	last, err := json.Marshal([]any{key(changes - 1), changes - 1})
	require.NoError(t, err)
	_, err = e.gw.Call(testkit.Ctx(t, time.Minute), "shop.Put", last)
	require.NoError(t, err)

	state := map[string]string{}
	snapshots, received := 0, 0
	for version := uint64(0); version < changes; {
		ev := s.next(t)
		received++
		if ev.Kind == "snapshot" {
			snapshots++
		}
		state = applyEvent(state, ev)
		version = ev.Version
	}
	t.Logf("%d changes reached a reader that stopped as %d events, %d of them snapshots", changes, received, snapshots)
	assert.Equal(t, 1, snapshots, "one instead of the changes it could not hold")
	assert.Less(t, received, changes)
	want := map[string]string{}
	e.shop.model.Range(func(k string, v int) bool { want[fmt.Sprintf("%q", k)] = fmt.Sprint(v); return true })
	assert.Equal(t, want, state)
	s.close()
}

// smallBuffers replaces e's HTTP server by one whose connections have
// small send buffers and returns a client whose connections have small
// receive buffers, so that a stream nobody reads blocks after a few events
// rather than megabytes of them.
func (e *env) smallBuffers(t *testing.T) *http.Client {
	e.http.Close()
	e.http = httptest.NewUnstartedServer(e.gw)
	e.http.Listener = smallBuffers{e.http.Listener}
	e.http.Start()
	t.Cleanup(e.http.Close)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetReadBuffer(4096) //nolint:errcheck // the test then only takes longer
		}
		return c, err
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestWatchStreamDropsAClientThatStopsReading: a write to a client that
// reads nothing more waits at most the gateway's timeout; then the stream
// ends and its subscription is dropped, while the client is still
// connected.
func TestWatchStreamDropsAClientThatStopsReading(t *testing.T) {
	leakcheck.Check(t)
	var log logbuf.Buffer
	e := newEnv(t, nil, gateway.WithTimeout(500*time.Millisecond), gateway.WithLogger(slog.New(slog.NewJSONHandler(&log, nil))))
	client := e.smallBuffers(t)
	s := e.watchWith(t, client, "shop.Model", "")
	assert.Equal(t, "snapshot", s.next(t).Kind)
	big := strings.Repeat("k", 1000)
	for i := 0; e.shop.model.Subscribers() > 0; i++ {
		require.Less(t, i, 100000, "the stream was never dropped")
		require.NoError(t, e.shop.model.Set(fmt.Sprint(big, i%100), i))
		if i%1000 == 999 {
			time.Sleep(100 * time.Millisecond) // a moment for the write's deadline to pass
		}
	}
	testkit.Eventually(t, "the gateway says it dropped the client", func() bool {
		return len(logLines(t, &log, "tether gateway: dropped a watch client that stopped reading")) == 1
	})
	dropped := logLines(t, &log, "tether gateway: dropped a watch client that stopped reading")[0]
	assert.Equal(t, "WARN", dropped["level"])
	assert.Equal(t, "shop.Model", dropped["rpc"])
	s.close()
}

// smallBuffers is a listener whose connections have small send buffers.
type smallBuffers struct{ net.Listener }

// Accept accepts a connection and shrinks its send buffer.
func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096) //nolint:errcheck // the test then only takes longer
	}
	return c, err
}
