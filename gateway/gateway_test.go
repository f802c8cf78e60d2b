package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

func TestCallsConvertArgumentsAndResults(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)

	assert.Equal(t, 5.0, e.result(t, "shop.Add", 2, 3))
	assert.Equal(t, 6.0, e.result(t, "shop.Sum", 1, 2, 3), "variadic")
	assert.Equal(t, 0.0, e.result(t, "shop.Sum"), "variadic, none given")
	// A variadic parameter of a toarray type: described as one, its
	// elements go out as arrays (describeMethod dropped ToArray).
	assert.Equal(t, []any{map[string]any{"$type": "gw.Point", "X": 1.0, "Y": 2.0}, map[string]any{"$type": "gw.Point", "X": 3.0, "Y": 0.0}},
		e.result(t, "shop.Path", map[string]any{"X": 1, "Y": 2}, map[string]any{"x": 3}), "variadic toarray")

	// Plain data with bytes (base64), a time (RFC 3339), a map and a float.
	order := map[string]any{
		"id": 42, "items": []any{"tea", "cake"},
		"blob": base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255}),
		"at":   "2026-11-21T10:30:00.5Z", "qty": map[string]any{"tea": 2}, "price": 4.5,
	}
	assert.Equal(t, norm(t, order), e.result(t, "shop.Place", order), "the same JSON comes back")

	// A toarray Copyable, by field name in and out, with its $type.
	assert.Equal(t, map[string]any{"$type": "gw.Point", "X": 11.0, "Y": 12.0},
		e.result(t, "shop.Move", map[string]any{"X": 1, "Y": 2}, 10))
	assert.Equal(t, map[string]any{"$type": "gw.Point", "X": 1.0, "Y": 0.0},
		e.result(t, "shop.Move", map[string]any{"$type": "gw.Point", "x": 1}, 0), "names match case-insensitively; missing fields are zero")

	// Integer map keys come from and go back to JSON's text keys.
	assert.Equal(t, map[string]any{"1": "one", "20": "twenty"}, e.result(t, "shop.Counts", map[string]any{"1": "one", "20": "twenty"}))

	// An untyped parameter takes and gives back plain JSON, and Copyables
	// by their $type; one that travels as an array has its fields in
	// order under $value, since nothing describes them there.
	v := map[string]any{"a": []any{1.0, "x", true, nil}, "p": map[string]any{"$type": "gw.Point", "$value": []any{3.0, 4.0}}}
	assert.Equal(t, v, e.result(t, "shop.Echo", v))
	code, msg, _ := e.failure(t, "shop.Echo", map[string]any{"$type": "gw.Point", "X": 3})
	assert.Equal(t, gateway.CodeInvalidParams, code)
	assert.Contains(t, msg, "Copyable gw.Point: cannot decode map")

	// A method of one parameter takes params as an object.
	status, resp := e.post(t, `{"jsonrpc":"2.0","id":1,"method":"shop.Place","params":{"id":9}}`)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, 9.0, resp.(map[string]any)["result"].(map[string]any)["id"])
}

func TestArgumentsThatDoNotFitAreInvalidParams(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	for _, c := range []struct {
		method string
		params []any
		want   string
	}{
		{"shop.Add", []any{1.5, 2}, "params[0]: want an integer (int), got 1.5"},
		{"shop.Add", []any{"1", 2}, "params[0]: want an integer (int), got a string"},
		{"shop.Add", []any{1}, "Add takes 2 arguments, got 1"},
		{"shop.Place", []any{map[string]any{"idd": 1}}, `main.Order has no field "idd"`},
		{"shop.Place", []any{map[string]any{"blob": "%%%"}}, "params[0].blob: want base64"},
		{"shop.Place", []any{map[string]any{"at": "yesterday"}}, "params[0].at: want an RFC 3339 time"},
		{"shop.Counts", []any{map[string]any{"one": "x"}}, `key "one"`},
		{"shop.Move", []any{map[string]any{"$type": "other.Thing"}, 1}, "want a gw.Point"},
		{"shop.Mine", []any{map[string]any{"$ref": "ref-nope"}}, "unknown or expired handle"},
		{"shop.Buy", []any{[]any{"tea"}}, "want a string (string), got an array"},
	} {
		code, msg, name := e.failure(t, c.method, c.params...)
		assert.Equal(t, gateway.CodeInvalidParams, code, "%s %v", c.method, c.params)
		assert.Contains(t, strings.ReplaceAll(msg, "gateway_test.", "main."), c.want)
		assert.Equal(t, "tether.bad-arguments", name)
	}
	assert.Equal(t, 3.0, e.result(t, "shop.Add", 1, 2), "the server serves on")
}

// TestTooDeepArgumentIsInvalidParams: JSON nested deeper than a call's
// argument may nest is refused before it is sent, as invalid params named
// tether.too-deep; one level less goes through.
func TestTooDeepArgumentIsInvalidParams(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	nest := func(n int) any {
		var v any = 1
		for i := 0; i < n; i++ {
			v = []any{v}
		}
		return v
	}
	maxArg := cborx.DefaultLimits.MaxDepth - 2
	m := e.call(t, "shop.Echo", nest(maxArg))
	require.Contains(t, m, "result")
	code, msg, name := e.failure(t, "shop.Echo", nest(maxArg+1))
	assert.Equal(t, gateway.CodeInvalidParams, code, msg)
	assert.Equal(t, "tether.too-deep", name)
	assert.Contains(t, msg, "flatten")
}

func TestErrorsKeepTheirNames(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	code, msg, name := e.failure(t, "shop.Buy", "tea")
	assert.Equal(t, gateway.CodeRemote, code)
	assert.Equal(t, "buying tea: sold out", msg)
	assert.Equal(t, "gw.sold-out", name)

	code, _, name = e.failure(t, "shop.Nope")
	assert.Equal(t, gateway.CodeMethodNotFound, code)
	assert.Equal(t, "tether.unknown-method", name)
	code, _, name = e.failure(t, "nobody.Get")
	assert.Equal(t, gateway.CodeMethodNotFound, code, "an unknown manager")
	assert.Equal(t, "tether.registry.not-found", name)
	code, _, _ = e.failure(t, "shopGet")
	assert.Equal(t, gateway.CodeMethodNotFound, code)

	// No traceback unless the server opted in.
	m := e.call(t, "shop.Panic")
	data := m["error"].(map[string]any)["data"].(map[string]any)
	assert.Equal(t, "tether.panic", data["name"])
	assert.NotContains(t, data, "traceback")

	tb := newEnv(t, []broker.Option{broker.WithTracebacks(true)})
	m = tb.call(t, "shop.Panic")
	data = m["error"].(map[string]any)["data"].(map[string]any)
	assert.Contains(t, data["traceback"], "Panic", "the server opted in")
}

func TestJSONRPCEnvelope(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	errCode := func(v any) float64 {
		return v.(map[string]any)["error"].(map[string]any)["code"].(float64)
	}

	status, v := e.post(t, `{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,`)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, float64(gateway.CodeParseError), errCode(v))
	assert.Nil(t, v.(map[string]any)["id"], "a parse error answers with id null")

	for _, body := range []string{
		`{"id":1,"method":"shop.Add","params":[1,2]}`,
		`{"jsonrpc":"1.0","id":1,"method":"shop.Add"}`,
		`{"jsonrpc":"2.0","id":1,"method":7}`,
		`{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":"1,2"}`,
		`{"jsonrpc":"2.0","id":{"a":1},"method":"shop.Add"}`,
		`7`,
		`[]`,
	} {
		_, v = e.post(t, body)
		assert.Equal(t, float64(gateway.CodeInvalidRequest), errCode(v), body)
	}

	// id kinds come back as they were sent.
	_, v = e.post(t, `{"jsonrpc":"2.0","id":"abc","method":"shop.Add","params":[1,2]}`)
	assert.Equal(t, "abc", v.(map[string]any)["id"])
	_, v = e.post(t, `{"jsonrpc":"2.0","id":null,"method":"shop.Add","params":[1,2]}`)
	assert.Contains(t, v.(map[string]any), "id")
	assert.Equal(t, 3.0, v.(map[string]any)["result"])
	// A method returning only an error has a null result, present.
	_, v = e.post(t, `{"jsonrpc":"2.0","id":2,"method":"shop.Note","params":["x"]}`)
	assert.Contains(t, v.(map[string]any), "result")
	assert.Nil(t, v.(map[string]any)["result"])

	// A notification runs but gets no response: 204 with no body.
	status, v = e.post(t, `{"jsonrpc":"2.0","method":"shop.Note","params":["quiet"]}`)
	assert.Equal(t, http.StatusNoContent, status)
	assert.Nil(t, v)
	assert.Contains(t, e.shop.notes, "quiet")
	status, _ = e.post(t, `{"jsonrpc":"2.0","method":"shop.Nope"}`)
	assert.Equal(t, http.StatusNoContent, status, "not even to an error")

	// A batch: responses in order, none for notifications, each invalid
	// element its own error.
	status, v = e.post(t, `[
		{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,2]},
		{"jsonrpc":"2.0","method":"shop.Note","params":["batched"]},
		1,
		{"jsonrpc":"2.0","id":"b","method":"shop.Buy","params":["cake"]},
		{"jsonrpc":"2.0","id":3,"method":"shop.Add","params":[3,4]}
	]`)
	assert.Equal(t, http.StatusOK, status)
	list := v.([]any)
	require.Len(t, list, 4)
	assert.Equal(t, 3.0, list[0].(map[string]any)["result"])
	assert.Equal(t, float64(gateway.CodeInvalidRequest), errCode(list[1]))
	assert.Nil(t, list[1].(map[string]any)["id"])
	assert.Equal(t, "b", list[2].(map[string]any)["id"])
	assert.Equal(t, float64(gateway.CodeRemote), errCode(list[2]))
	assert.Equal(t, 7.0, list[3].(map[string]any)["result"])
	assert.Contains(t, e.shop.notes, "batched")

	status, v = e.post(t, `[{"jsonrpc":"2.0","method":"shop.Note","params":["a"]},{"jsonrpc":"2.0","method":"shop.Note","params":["b"]}]`)
	assert.Equal(t, http.StatusNoContent, status, "a batch of notifications")
	assert.Nil(t, v)

	// Built-ins.
	assert.Equal(t, []any{"shop"}, e.result(t, "rpc.managers"))
	d := e.result(t, "rpc.describe", "shop").(map[string]any)
	assert.Equal(t, "*gateway_test.shop", d["type"])
	code, _, _ := e.failure(t, "rpc.nothing")
	assert.Equal(t, gateway.CodeMethodNotFound, code)
}

func TestHTTPRules(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithToken("s3cret"), gateway.WithMaxBodySize(1024), gateway.WithMaxBatch(3))
	body := `{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[1,2]}`

	status, v := e.post(t, body)
	assert.Equal(t, http.StatusUnauthorized, status, "no token")
	assert.Equal(t, float64(gateway.CodeUnauthorized), v.(map[string]any)["error"].(map[string]any)["code"])
	status, _ = e.post(t, body, "Authorization", "Bearer wrong")
	assert.Equal(t, http.StatusUnauthorized, status)
	status, v = e.post(t, body, "Authorization", "Bearer s3cret")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, 3.0, v.(map[string]any)["result"])

	auth := []string{"Authorization", "Bearer s3cret"}
	status, _ = e.post(t, `{"jsonrpc":"2.0","id":1,"method":"shop.Note","params":["`+strings.Repeat("x", 2000)+`"]}`, auth...)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status)
	assert.NotContains(t, e.shop.notes, strings.Repeat("x", 2000))

	status, _ = e.post(t, body, append(auth, "Content-Type", "text/plain")...)
	assert.Equal(t, http.StatusUnsupportedMediaType, status, "a form post from a browser is refused")
	status, v = e.post(t, "["+strings.Repeat(body+",", 3)+body+"]", auth...)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, v.(map[string]any)["error"].(map[string]any)["message"], "at most 3")

	req, err := http.NewRequest(http.MethodGet, e.http.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, "POST", resp.Header.Get("Allow"))
}

func TestHandles(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	h := e.result(t, "shop.Open", "tips").(map[string]any)
	id, _ := h["$ref"].(string)
	require.True(t, strings.HasPrefix(id, "ref-"), "a handle: %v", h)
	assert.Equal(t, "*gateway_test.counter", h["type"])

	assert.Equal(t, 2.0, e.result(t, id+".Add", 2))
	assert.Equal(t, 5.0, e.result(t, id+".Add", 3), "the same object each time")
	assert.Equal(t, "tips", e.result(t, id+".Name"))
	assert.Equal(t, true, e.result(t, "shop.Mine", map[string]any{"$ref": id}), "a handle passed back is the shop's own object")
	d := e.result(t, "rpc.describe", id).(map[string]any)
	assert.Equal(t, "*gateway_test.counter", d["type"])

	assert.Nil(t, e.result(t, "rpc.release", id))
	code, _, name := e.failure(t, id+".Add", 1)
	assert.Equal(t, gateway.CodeMethodNotFound, code)
	assert.Equal(t, "tether.unknown-handle", name)
	code, _, _ = e.failure(t, "rpc.release", id)
	assert.Equal(t, gateway.CodeInvalidParams, code, "released once only")
}

func TestModelsComeAsSnapshots(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	require.NoError(t, e.shop.model.Set("tea", 3))
	require.NoError(t, e.shop.model.Set("cake", 1))
	snap := e.result(t, "shop.Model").(map[string]any)
	assert.Equal(t, "*cache.Map[string,int]", snap["$cacheable"])
	assert.Equal(t, 2.0, snap["version"])
	assert.Equal(t, e.shop.model.Epoch(), snap["epoch"])
	assert.Equal(t, []any{
		map[string]any{"key": "cake", "value": 1.0},
		map[string]any{"key": "tea", "value": 3.0},
	}, snap["entries"])
	testkit.Eventually(t, "the snapshot's subscription is dropped", func() bool { return e.shop.model.Subscribers() == 0 })
}

func TestOutageGivesAClearErrorThenRecovers(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	assert.Equal(t, 3.0, e.result(t, "shop.Add", 1, 2))

	e.proxy.Refuse(true)
	e.proxy.Reset()
	start := time.Now()
	code, msg, name := e.failure(t, "shop.Add", 1, 2)
	assert.Equal(t, gateway.CodeUnavailable, code, msg)
	assert.Contains(t, []string{"tether.disconnected", "tether.connection-lost", "tether.dead-reference"}, name)
	t.Logf("answered during the outage in %v: %s", time.Since(start), msg)
	assert.NotContains(t, msg, "127.0.0.1", "the gateway's upstream address is its own business")
	assert.Contains(t, msg, "the gateway")

	e.proxy.Refuse(false)
	testkit.Eventually(t, "calls work again", func() bool {
		return e.call(t, "shop.Add", 1, 2)["result"] == 3.0
	})
}

func TestTimeoutIsItsOwnError(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil, gateway.WithTimeout(100*time.Millisecond))
	code, _, name := e.failure(t, "shop.Slow")
	assert.Equal(t, gateway.CodeTimeout, code)
	assert.Contains(t, []string{"tether.timeout", "context.deadline-exceeded"}, name)
	assert.Equal(t, 3.0, e.result(t, "shop.Add", 1, 2))
}

func TestBlackHoledLinkFailsWithinTheDeadPeerTimeout(t *testing.T) {
	leakcheck.Check(t)
	e := newEnvDeadPeer(t, 500*time.Millisecond, nil) // gateway timeout 30 s
	assert.Equal(t, 3.0, e.result(t, "shop.Add", 1, 2))
	e.proxy.Refuse(true)
	e.proxy.Blackhole(true)
	code, msg, _ := e.failure(t, "shop.Add", 1, 2)
	assert.Equal(t, gateway.CodeUnavailable, code, "the link is found dead, not the gateway's timeout: %s", msg)
	e.proxy.Restore()
	testkit.Eventually(t, "calls work again", func() bool {
		return e.call(t, "shop.Add", 1, 2)["result"] == 3.0
	})
}

// TestWatchFollowsAModelAcrossAnOutage: Watch reports the snapshot, each
// change once and in order, stale when the link drops and live when it is
// back, with the changes made meanwhile in between.
func TestWatchFollowsAModelAcrossAnOutage(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	require.NoError(t, e.shop.model.Set("a", 1))
	ctx, cancel := context.WithCancel(testkit.Ctx(t, time.Minute))
	events := make(chan gateway.Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- e.gw.Watch(ctx, "shop.Model", nil, func(ev gateway.Event) { events <- ev })
	}()
	next := func() gateway.Event {
		select {
		case ev := <-events:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
			return gateway.Event{}
		}
	}
	snap := next()
	assert.Equal(t, "snapshot", snap.Kind)
	assert.Equal(t, uint64(1), snap.Version)
	assert.Equal(t, []gateway.Entry{{Key: json.RawMessage(`"a"`), Value: json.RawMessage(`1`)}}, snap.Entries)

	require.NoError(t, e.shop.model.Set("b", 2))
	assert.Equal(t, gateway.Event{Kind: "set", Version: 2, Key: json.RawMessage(`"b"`), Value: json.RawMessage(`2`)}, next())

	e.proxy.Refuse(true)
	e.proxy.Reset()
	assert.Equal(t, "stale", next().Kind)
	require.NoError(t, e.shop.model.Set("c", 3))
	e.shop.model.Delete("a")
	e.proxy.Refuse(false)
	var got []string
	for ev := next(); ev.Kind != "live"; ev = next() {
		got = append(got, fmt.Sprintf("%s v%d %s", ev.Kind, ev.Version, ev.Key))
	}
	assert.Equal(t, []string{`set v3 "c"`, `delete v4 "a"`}, got, "the changes made during the outage, once each")

	// The server is replaced by one whose model is a new instance: a
	// reset, then the differences.
	other := newShop()
	require.NoError(t, other.model.Set("b", 2))
	require.NoError(t, other.model.Set("z", 26))
	e.proxy.SetTarget(startShop(t, other))
	e.proxy.Reset()
	assert.Equal(t, "stale", next().Kind)
	reset := next()
	assert.Equal(t, "reset", reset.Kind)
	assert.Equal(t, other.model.Epoch(), reset.Epoch)
	got = nil
	for ev := next(); ev.Kind != "live"; ev = next() {
		got = append(got, fmt.Sprintf("%s v%d %s", ev.Kind, ev.Version, ev.Key))
	}
	assert.ElementsMatch(t, []string{`delete v2 "c"`, `set v2 "z"`}, got, "b is the same in both")
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
	testkit.Eventually(t, "the subscription is dropped", func() bool { return e.shop.model.Subscribers() == 0 })
}

func TestReviewedEdges(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)

	// Member names are exact: "ID" is no id (a notification) and
	// "JSONRPC" no version.
	status, _ := e.post(t, `{"jsonrpc":"2.0","method":"shop.Note","params":["shouted"],"ID":5}`)
	assert.Equal(t, http.StatusNoContent, status)
	_, v := e.post(t, `{"JSONRPC":"2.0","id":1,"METHOD":"shop.Add","params":[1,2]}`)
	assert.Equal(t, float64(gateway.CodeInvalidRequest), v.(map[string]any)["error"].(map[string]any)["code"])
	// Any JSON number is an id, and comes back as sent.
	resp, err := http.Post(e.http.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1e400,"method":"shop.Add","params":[1,2]}`))
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, `{"jsonrpc":"2.0","id":1e400,"result":3}`+"\n", string(raw))

	for _, c := range []struct {
		method string
		params []any
		want   string
	}{
		{"shop.Add", []any{nil, 2}, "params[0]: want an integer (int), got null"},
		{"shop.Small", []any{300}, "want an integer (int8), got 300"},
		{"shop.Counts", []any{map[string]any{"1": "a", "01": "b"}}, "repeats another key"},
		{"shop.Echo", []any{map[string]any{"$type": 5, "a": 1}}, "$type must be"},
	} {
		code, msg, _ := e.failure(t, c.method, c.params...)
		assert.Equal(t, gateway.CodeInvalidParams, code, "%s %v", c.method, c.params)
		assert.Contains(t, msg, c.want)
	}
	// What results write, params accept.
	assert.Equal(t, "NaN", e.result(t, "shop.Half", "NaN"))
	assert.Equal(t, "+Inf", e.result(t, "shop.Half", "+Inf"))
	assert.Equal(t, map[string]any{"1": "one"}, e.result(t, "shop.Counts", []any{[]any{1, "one"}}))
	assert.Equal(t, 7.0, e.result(t, "shop.Small", 7))

	// Descriptions of handles go with the handles.
	for i := 0; i < 5; i++ {
		id := e.result(t, "shop.Open", "c").(map[string]any)["$ref"].(string)
		e.result(t, id+".Add", 1)
		e.result(t, "rpc.release", id)
	}
	assert.Equal(t, 1, e.gw.DescriptionsCached(), "only the shop's")

	// A closed gateway says so, in a way errors.Is sees.
	require.NoError(t, e.gw.Close())
	_, err = e.gw.Call(testkit.Ctx(t, time.Minute), "shop.Add", []byte(`[1,2]`))
	assert.ErrorIs(t, err, gateway.ErrClosed)
	_, err = e.gw.Describe(testkit.Ctx(t, time.Minute), "shop")
	assert.ErrorIs(t, err, gateway.ErrClosed)
	err = e.gw.Watch(testkit.Ctx(t, time.Minute), "shop.Model", nil, func(gateway.Event) {})
	assert.ErrorIs(t, err, gateway.ErrClosed)
}

// TestSlowWatcherGetsASnapshot: a watcher too slow for the changes does not
// make the gateway hold them all; it gets the state as a new snapshot, and
// ends up with the model's state.
func TestSlowWatcherGetsASnapshot(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	// A log longer than the changes: the mirror receives each one (it never
	// falls behind the log into a resync), so only the gateway's bound
	// keeps them from piling up.
	e.shop.model = cache.NewMap[string, int](cache.WithLogSize(10000))
	ctx, cancel := context.WithCancel(testkit.Ctx(t, time.Minute))
	defer cancel()
	first, release := make(chan struct{}), make(chan struct{})
	events := make(chan gateway.Event, 20000)
	done := make(chan error, 1)
	go func() {
		n := 0
		done <- e.gw.Watch(ctx, "shop.Model", nil, func(ev gateway.Event) {
			if n++; n == 1 {
				close(first)
				<-release // stuck on the first event
			}
			events <- ev
		})
	}()
	<-first
	const changes = 6000
	for i := range changes - 1 {
		require.NoError(t, e.shop.model.Set(fmt.Sprint(i%100), i))
	}
	// The last change through the gateway's own connection: when the call
	// returns, the watch's mirror holds every change (read-your-writes).
	_, err := e.gw.Call(ctx, "shop.Put", []byte(`["99", 5999]`))
	require.NoError(t, err)
	close(release)
	state := map[string]string{}
	snapshots, received := 0, 0
	for version := uint64(0); version < changes; {
		var ev gateway.Event
		select {
		case ev = <-events:
		case <-time.After(30 * time.Second):
			t.Fatalf("stuck at v%d", version)
		}
		received++
		if ev.Kind == "snapshot" {
			snapshots++
		}
		state = applyEvent(state, ev)
		version = ev.Version
	}
	t.Logf("%d changes reached a stuck watcher as %d events, %d of them snapshots", changes, received, snapshots)
	assert.Equal(t, 2, snapshots, "the first, and one instead of the changes it could not hold")
	assert.Less(t, received, changes)
	want := map[string]string{}
	e.shop.model.Range(func(k string, v int) bool { want[fmt.Sprintf("%q", k)] = fmt.Sprint(v); return true })
	assert.Equal(t, want, state)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

// applyEvent applies a watch event to state, a model's entries as JSON
// text, and returns the state after it: a snapshot replaces it, a set
// changes one entry.
func applyEvent(state map[string]string, ev gateway.Event) map[string]string {
	switch ev.Kind {
	case "snapshot":
		state = map[string]string{}
		for _, en := range ev.Entries {
			state[string(en.Key)] = string(en.Value)
		}
	case "set":
		state[string(ev.Key)] = string(ev.Value)
	}
	return state
}
