package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
)

// WithLogger makes the gateway log to logger: one line per HTTP request
// at Info (the access log: HTTP method, path, status, duration, the
// JSON-RPC method or methods, the error codes, the client's address), its
// link to the upstream server going down (Warn) and up (Info), and /watch
// streams it ended (Warn: the model could no longer be followed, or the
// client stopped reading). A nil logger is refused; without WithLogger the
// gateway logs nothing.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger, o.loggerSet = logger, true })
}

// silent is the logger of a gateway not given one.
var silent = slog.New(slog.DiscardHandler)

// accessKey is the context key of a request's accessEntry.
type accessKey struct{}

// accessEntry is what the access log says about one HTTP request besides
// its HTTP fields: the JSON-RPC methods it called (in its batch's order;
// "" for a request too malformed to name one) and the error codes it
// answered with (in the order of the responses). The requests of a batch
// add to it concurrently.
type accessEntry struct {
	mu      sync.Mutex
	batch   int // the number of requests in a batch, 0 for a single one
	methods []string
	codes   []int
}

// entryOf returns ctx's accessEntry, or nil outside ServeHTTP.
func entryOf(ctx context.Context) *accessEntry {
	a, _ := ctx.Value(accessKey{}).(*accessEntry)
	return a
}

// method records the JSON-RPC method of the request's i-th call (0 for a
// single request), so that a batch's are logged in its order (nil-safe).
func (a *accessEntry) method(i int, name string) {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if i >= len(a.methods) {
		a.methods = append(a.methods, make([]string, i+1-len(a.methods))...)
	}
	a.methods[i] = name
}

// code records an error code the request answered with (nil-safe).
func (a *accessEntry) code(code int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.codes = append(a.codes, code)
	a.mu.Unlock()
}

// setBatch records that the request was a batch of n (nil-safe).
func (a *accessEntry) setBatch(n int) {
	if a == nil {
		return
	}
	a.mu.Lock()
	a.batch = n
	a.mu.Unlock()
}

// attrs are the entry's fields of the log line: "rpc" and "code" for a
// single request, "batch", "rpc" (a list) and "codes" for a batch.
func (a *accessEntry) attrs() []any {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []any
	if a.batch > 0 {
		out = append(out, "batch", a.batch, "rpc", a.methods)
		if len(a.codes) > 0 {
			out = append(out, "codes", a.codes)
		}
		return out
	}
	if len(a.methods) > 0 {
		out = append(out, "rpc", a.methods[0])
	}
	if len(a.codes) > 0 {
		out = append(out, "code", a.codes[0])
	}
	return out
}

// accessWriter is an http.ResponseWriter that remembers the status it
// wrote, for the access log. Unwrap lets http.ResponseController reach
// the writer's Flush and deadlines (the /watch stream needs them).
type accessWriter struct {
	http.ResponseWriter
	status int
	entry  *accessEntry
}

// WriteHeader records the status and writes it.
func (w *accessWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write writes body bytes; the status is 200 if none was written before.
func (w *accessWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the writer it wraps.
func (w *accessWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logged runs serve on the request and writes its access-log line, when
// the gateway has a logger.
func (g *Gateway) logged(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter, *http.Request)) {
	if g.opts.logger == silent {
		serve(w, r)
		return
	}
	start := time.Now()
	entry := &accessEntry{}
	aw := &accessWriter{ResponseWriter: w, entry: entry}
	serve(aw, r.WithContext(context.WithValue(r.Context(), accessKey{}, entry)))
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", aw.status,
		"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr}
	g.opts.logger.Info("tether gateway: request", append(attrs, entry.attrs()...)...)
}

// recordErrors adds the error codes of v, a response or a batch of them
// about to be written to w, to w's access-log entry.
func recordErrors(w http.ResponseWriter, v any) {
	aw, ok := w.(*accessWriter)
	if !ok {
		return
	}
	switch x := v.(type) {
	case *response:
		if x.Error != nil {
			aw.entry.code(x.Error.Code)
		}
	case []*response:
		for _, resp := range x {
			if resp.Error != nil {
				aw.entry.code(resp.Error.Code)
			}
		}
	}
}

// watchLink logs the gateway's upstream link going down and up; it
// returns the function that stops it.
func (g *Gateway) watchLink() (stop func()) {
	logger := g.opts.logger
	up := g.cl.Connected.Connect(func(c *broker.Conn) {
		p := c.Peer()
		logger.Info("tether gateway: upstream link up", "server", p.Name, "addr", fmt.Sprint(p.Addr))
	})
	down := g.cl.Disconnected.Connect(func(err error) {
		logger.Warn("tether gateway: upstream link down; requests fail with -32001 until it is back", "err", err)
	})
	return func() { up(); down() }
}
