package gateway

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/tether-go/tether/broker"
)

// response is one JSON-RPC response.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

var null = json.RawMessage("null")

// ServeHTTP answers a JSON-RPC 2.0 request or batch sent as the body of a
// POST with Content-Type application/json. Responses are HTTP 200 with a
// JSON-RPC response (errors included), 204 when every request was a
// notification, 401 without the right bearer token, 405 for other methods,
// 413 for a body over the limit and 415 for another content type. A GET
// of HealthPath (/healthz) is a health probe instead: 200 when the
// upstream server is connected and serving, 503 otherwise, with a small
// JSON body, {"status": "serving", "link": "connected"}. A GET of
// WatchPath (/watch) streams a model's events (see Watch) as Server-Sent
// Events. With WithCORS, answers to pages from the allowed origins carry
// CORS headers, and preflight (OPTIONS) requests are answered.
// With WithInspector, a GET of InspectorPath (/ui/) serves the
// web inspector.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.logged(w, r, g.route)
}

// route answers a request by its path, after CORS.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request) {
	if g.serveCORS(w, r) {
		return
	}
	switch r.URL.Path {
	case HealthPath:
		g.serveHealth(w, r)
	case WatchPath:
		g.serveWatch(w, r)
	default:
		if g.isInspector(r) {
			g.serveInspector(w, r)
			return
		}
		g.serveRPC(w, r)
	}
}

// serveRPC answers a JSON-RPC request or batch POSTed to any other path.
func (g *Gateway) serveRPC(w http.ResponseWriter, r *http.Request) {
	body, ok := g.readBody(w, r)
	if !ok {
		return
	}
	out, status := g.handle(r.Context(), body)
	if out == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, status, out)
}

// readBody returns the body of an HTTP request the gateway takes, or
// writes the refusal and returns false: a missing or wrong token, another
// method than POST, another content type, a body over the limit.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if g.opts.token != "" && !g.authorized(r) {
		refuseToken(w)
		return nil, false
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, fail(null, CodeInvalidRequest, "JSON-RPC requests are POSTed", "tether.bad-request"))
		return nil, false
	}
	// Requiring the JSON content type also keeps browsers from posting
	// forms here across sites: that would need a CORS preflight.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, fail(null, CodeInvalidRequest, "Content-Type must be application/json", "tether.bad-request"))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.opts.maxBody))
	if err != nil {
		g.refuseBody(w, err)
		return nil, false
	}
	return body, true
}

// refuseBody answers a body that could not be read: over the limit, or cut.
func (g *Gateway) refuseBody(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeJSON(w, http.StatusRequestEntityTooLarge, fail(null, CodeInvalidRequest, fmt.Sprintf("request body over %d bytes", g.opts.maxBody), "tether.message-too-large"))
		return
	}
	writeJSON(w, http.StatusBadRequest, fail(null, CodeParseError, "reading the body: "+err.Error(), "tether.bad-request"))
}

// refuseToken answers a request without the right bearer token.
func refuseToken(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="tether"`)
	writeJSON(w, http.StatusUnauthorized, fail(null, CodeUnauthorized, "missing or wrong bearer token", "tether.unauthorized"))
}

// authorized reports whether r carries the gateway's bearer token.
func (g *Gateway) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(g.opts.token)) == 1
}

// handle answers a body: a single request, or a batch. It returns nil when
// nothing is to be written back (only notifications).
func (g *Gateway) handle(ctx context.Context, body []byte) (any, int) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		return fail(null, CodeParseError, "parse error: the body is not valid JSON", "tether.parse-error"), http.StatusOK
	}
	if trimmed[0] != '[' {
		if resp := g.one(ctx, trimmed, 0); resp != nil {
			return resp, http.StatusOK
		}
		return nil, http.StatusNoContent
	}
	batch, bad := g.readBatch(trimmed)
	if bad != nil {
		return bad, http.StatusOK
	}
	entryOf(ctx).setBatch(len(batch))
	if out := g.batch(ctx, batch); len(out) > 0 {
		return out, http.StatusOK
	}
	return nil, http.StatusNoContent
}

// readBatch splits a batch into its requests, or refuses it: empty, or
// longer than the gateway takes.
func (g *Gateway) readBatch(body []byte) ([]json.RawMessage, *response) {
	var batch []json.RawMessage
	if err := json.Unmarshal(body, &batch); err != nil {
		return nil, fail(null, CodeParseError, "parse error: "+err.Error(), "tether.parse-error")
	}
	if len(batch) == 0 {
		return nil, fail(null, CodeInvalidRequest, "an empty batch", "tether.bad-request")
	}
	if len(batch) > g.opts.maxBatch {
		return nil, fail(null, CodeInvalidRequest, fmt.Sprintf("a batch of %d requests; at most %d", len(batch), g.opts.maxBatch), "tether.bad-request")
	}
	return batch, nil
}

// batch answers the requests of a batch; the notifications have no
// response.
func (g *Gateway) batch(ctx context.Context, batch []json.RawMessage) []*response {
	// The requests of a batch run concurrently, a few at a time; the
	// responses keep the batch's order.
	resps := make([]*response, len(batch))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, raw := range batch {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			resps[i] = g.one(ctx, raw, i)
		}()
	}
	wg.Wait()
	out := make([]*response, 0, len(resps))
	for _, r := range resps {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// request is one JSON-RPC request, read.
type request struct {
	id     json.RawMessage // nil for a notification
	method string
	params json.RawMessage
}

// one answers a single request, the i-th of its batch (0 alone); nil for
// a notification.
func (g *Gateway) one(ctx context.Context, raw json.RawMessage, i int) *response {
	req, bad := readRequest(raw)
	if bad != nil {
		return bad
	}
	entryOf(ctx).method(i, req.method)
	result, err := g.Call(ctx, req.method, req.params)
	if req.id == nil {
		return nil // a notification: no response, even to an error
	}
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = newError(CodeInternal, broker.Internal, "tether.internal", err.Error())
		}
		return &response{JSONRPC: "2.0", ID: req.id, Error: e.forHTTP()}
	}
	return &response{JSONRPC: "2.0", ID: req.id, Result: result}
}

// readRequest reads a request's members, or returns the response that
// refuses it.
func readRequest(raw json.RawMessage) (*request, *response) {
	// The members are read by their exact names, as the specification
	// spells them (encoding/json would match "ID" or "Method" too).
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, fail(null, CodeInvalidRequest, "a request must be an object", "tether.bad-request")
	}
	id, ok := requestID(members)
	if !ok {
		return nil, fail(null, CodeInvalidRequest, "id must be a string, a number or null", "tether.bad-request")
	}
	method, problem := readMethod(members)
	if problem != "" {
		respID := id
		if respID == nil {
			respID = null
		}
		return nil, fail(respID, CodeInvalidRequest, problem, "tether.bad-request")
	}
	return &request{id: id, method: method, params: members["params"]}, nil
}

// requestID reads the id member: nil for a notification (no id), and ok
// false for an id that is not a string, a number or null.
func requestID(members map[string]json.RawMessage) (id json.RawMessage, ok bool) {
	id, has := members["id"]
	switch {
	case !has:
		return nil, true // a notification
	case id == nil:
		return null, true
	}
	return id, validID(id)
}

// readMethod reads the jsonrpc, method and params members; problem says
// what is wrong with them, if anything.
func readMethod(members map[string]json.RawMessage) (method, problem string) {
	var version string
	if json.Unmarshal(members["jsonrpc"], &version) != nil || version != "2.0" {
		return "", `"jsonrpc" must be "2.0"`
	}
	if json.Unmarshal(members["method"], &method) != nil || members["method"] == nil || string(members["method"]) == "null" {
		return "", `"method" must be a string`
	}
	if p := bytes.TrimLeft(members["params"], " \t\r\n"); len(p) > 0 && p[0] != '[' && p[0] != '{' {
		return "", `"params" must be an array or an object`
	}
	return method, ""
}

// validID reports whether id is a JSON string, number or null.
func validID(id json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(id))
	dec.UseNumber() // any JSON number, 1e400 included
	var v any
	if dec.Decode(&v) != nil {
		return false
	}
	switch v.(type) {
	case nil, string, json.Number:
		return true
	}
	return false
}

// fail is the response to a request the gateway refuses before any call:
// a body that is not JSON-RPC, or a missing or wrong bearer token.
func fail(id json.RawMessage, code int, msg, name string) *response {
	class := broker.InvalidArgument
	if code == CodeUnauthorized {
		class = broker.Unauthenticated
	}
	return &response{JSONRPC: "2.0", ID: id, Error: &Error{Code: code, Message: msg, Data: &ErrorData{Name: name, Code: class.String()}}}
}

// writeJSON writes v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	recordErrors(w, v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.Encode(v) //nolint:errcheck // the client went away: nothing to do
}
