package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// WatchPath is where the gateway streams a model's events to an HTTP
// client as Server-Sent Events: GET /watch?method=NAME.Method&params=[...].
const WatchPath = "/watch"

// pingInterval is how often an idle stream gets a comment line, so that
// proxies and load balancers keep it open.
var pingInterval = 15 * time.Second

// errPing is what next returns when the ping ticker fired before any
// event: not a failure.
var errPing = errors.New("ping")

// serveWatch answers GET /watch: the events of Watch as a
// text/event-stream, one SSE event per Event, until the client goes away,
// the gateway closes or the mirror ends. Errors before the stream starts
// are a JSON-RPC error body with an HTTP status (httpStatus); after, an
// "error" event ends the stream.
func (g *Gateway) serveWatch(w http.ResponseWriter, r *http.Request) {
	if g.opts.token != "" && !g.authorized(r) && !g.queryAuthorized(r) {
		refuseToken(w)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, fail(null, CodeInvalidRequest, "a watch is a GET", "tether.bad-request"))
		return
	}
	q := r.URL.Query()
	method := q.Get("method")
	if method == "" {
		writeJSON(w, http.StatusBadRequest, fail(null, CodeInvalidRequest, `the "method" query parameter is missing`, "tether.bad-request"))
		return
	}
	params := json.RawMessage(q.Get("params"))
	s, err := g.startWatch(r.Context(), method, params)
	if err != nil {
		e := errorFor(err).forHTTP()
		writeJSON(w, httpStatus(e.Code), &response{JSONRPC: "2.0", ID: null, Error: e})
		return
	}
	defer s.close()
	g.stream(r.Context(), newSSEWriter(w, g.opts.timeout), s)
}

// queryAuthorized reports whether r carries the gateway's bearer token in
// its access_token query parameter (browsers' EventSource cannot set a
// header).
func (g *Gateway) queryAuthorized(r *http.Request) bool {
	tok := r.URL.Query().Get("access_token")
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(g.opts.token)) == 1
}

// stream writes s's events to out until ctx ends, the gateway closes, the
// mirror ends or a write fails, with a ping comment whenever the stream
// has been idle for pingInterval.
func (g *Gateway) stream(ctx context.Context, out *sseWriter, s *jsonSink) {
	if out.start() != nil {
		return
	}
	tick := time.NewTicker(pingInterval)
	defer tick.Stop()
	for {
		err := g.next(ctx, s, tick.C, func(evs []Event) error {
			for _, ev := range evs {
				if err := out.event(ev); err != nil {
					return err
				}
			}
			return nil
		})
		switch {
		case err == nil:
		case errors.Is(err, errPing):
			err = out.ping()
		default:
			var e *Error
			if errors.As(err, &e) { // not ctx's error, nor a write's: tell the client why
				out.fail(e.forHTTP())
			}
		}
		if err != nil {
			return
		}
	}
}

// sseWriter writes Server-Sent Events to an HTTP response, each flushed at
// once and within a write deadline.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	id      uint64
}

// newSSEWriter is an sseWriter on w whose writes each take at most
// timeout.
func newSSEWriter(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// start writes the response's header.
func (o *sseWriter) start() error {
	h := o.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not hold the events back
	o.w.WriteHeader(http.StatusOK)
	return o.flush()
}

// event writes ev as the next event: its kind, its number and its JSON.
func (o *sseWriter) event(ev Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return o.write(ev.Kind, data)
}

// fail writes the "error" event that ends a stream.
func (o *sseWriter) fail(e *Error) {
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	o.write("error", data) //nolint:errcheck // the stream ends either way
}

// ping writes a comment line, which clients ignore and proxies see as
// traffic.
func (o *sseWriter) ping() error {
	if err := o.deadline(); err != nil {
		return err
	}
	if _, err := io.WriteString(o.w, ": ping\n\n"); err != nil {
		return err
	}
	return o.flush()
}

// write writes one event.
func (o *sseWriter) write(kind string, data []byte) error {
	if err := o.deadline(); err != nil {
		return err
	}
	o.id++
	if _, err := fmt.Fprintf(o.w, "event: %s\nid: %d\ndata: %s\n\n", kind, o.id, data); err != nil {
		return err
	}
	return o.flush()
}

// deadline bounds the next write: a client that stopped reading is
// dropped after the timeout instead of holding the stream forever. It
// also lifts the server's own write timeout, meant for short answers.
// A ResponseWriter that cannot set deadlines is written to without one.
func (o *sseWriter) deadline() error {
	err := o.rc.SetWriteDeadline(time.Now().Add(o.timeout))
	if errors.Is(err, http.ErrNotSupported) {
		return nil
	}
	return err
}

// flush sends what was written.
func (o *sseWriter) flush() error {
	return o.rc.Flush()
}

// httpStatus is the HTTP status of an answer that is only a JSON-RPC
// error (a watch that could not start), by the error's code.
func httpStatus(code int) int {
	switch code {
	case CodeParseError, CodeInvalidRequest, CodeInvalidParams:
		return http.StatusBadRequest
	case CodeMethodNotFound:
		return http.StatusNotFound
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeTimeout:
		return http.StatusGatewayTimeout
	case CodeRemote, CodeRefused:
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}
