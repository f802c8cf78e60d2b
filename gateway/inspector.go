package gateway

import (
	"embed"
	"net/http"
	"path"
	"strings"
)

// InspectorPath is where a gateway made WithInspector serves its web
// inspector: GET /ui/ is the page, /ui/app.js and /ui/style.css what it
// loads.
const InspectorPath = "/ui/"

// inspectorFiles are the inspector's page, script and style sheet: plain
// files with no build step, embedded so that the binary is all it needs.
//
//go:embed ui/index.html ui/app.js ui/style.css
var inspectorFiles embed.FS

// inspectorTypes are the content types of the inspector's files, by
// extension: set here rather than read from the system's MIME tables, which
// differ from machine to machine.
var inspectorTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// inspectorPolicy is the Content-Security-Policy of the inspector's files:
// the page loads nothing but its own script and style sheet and talks to
// nothing but the gateway that served it.
const inspectorPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// WithInspector makes the gateway serve a web inspector at InspectorPath
// (/ui/): a page that lists the managers and their methods, calls them
// with JSON arguments, follows the handles in results, shows models as
// live tables (through GET /watch) and always shows the state of the
// gateway's link to its server (from /healthz). Its static files need no
// bearer token; the page asks for the token, when the gateway has one, and
// sends it with its own requests. Without this option /ui/ is an ordinary
// JSON-RPC path.
func WithInspector() Option {
	return optionFunc(func(o *options) { o.inspector = true })
}

// isInspector reports whether r is for the inspector's files.
func (g *Gateway) isInspector(r *http.Request) bool {
	return g.opts.inspector && (r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, InspectorPath))
}

// serveInspector answers GET (or HEAD) of the inspector's files: /ui
// redirects to /ui/, /ui/ is the page, a file that is not one of them is
// 404 and other methods are 405.
func (g *Gateway) serveInspector(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the inspector's files are read with GET", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/ui" {
		// A relative Location keeps a prefix the gateway is mounted under
		// (http.StripPrefix), which r.URL.Path no longer shows.
		w.Header().Set("Location", "ui/")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, InspectorPath)
	if name == "" {
		name = "index.html"
	}
	body, err := inspectorFiles.ReadFile("ui/" + name)
	ctype, known := inspectorTypes[path.Ext(name)]
	if err != nil || !known || strings.Contains(name, "/") {
		http.Error(w, "no such file in the inspector: "+name, http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", inspectorPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache") // a new binary serves a new page
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body) //nolint:errcheck // the client went away: nothing to do
	}
}
