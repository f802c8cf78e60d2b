package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/tether-go/tether/broker"
)

// WithCORS lets web pages from origins ("https://app.example.com", scheme,
// host and port as a browser sends them in the Origin header; "*" for any)
// call the gateway from a browser: the answers to their requests carry
// Access-Control-Allow-Origin with their origin, and their preflight
// (OPTIONS) requests are answered, allowing GET and POST with the
// Authorization and Content-Type headers. It applies to JSON-RPC requests,
// /watch and /healthz. Without it (the default) the gateway sends no CORS
// headers and browsers keep other sites' pages from reading its answers.
// The bearer token still applies: CORS only says which pages may try.
func WithCORS(origins ...string) Option {
	return optionFunc(func(o *options) { o.cors, o.corsSet = origins, true })
}

// CORS headers the gateway sends.
const (
	corsMethods = "GET, POST, OPTIONS"
	corsHeaders = "Authorization, Content-Type, Last-Event-ID"
	corsMaxAge  = "600" // seconds a browser may keep a preflight's answer
)

// validateCORS refuses WithCORS without origins, or with one that is not
// "*" nor a scheme://host[:port] origin.
func validateCORS(origins []string) error {
	if len(origins) == 0 {
		return fmt.Errorf("%w: gateway.WithCORS needs at least one origin (or \"*\")", broker.ErrInvalidOption)
	}
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("%w: gateway.WithCORS: %q is not an origin: want scheme://host[:port], as in https://app.example.com, or \"*\"", broker.ErrInvalidOption, o)
		}
	}
	return nil
}

// allowedOrigin reports whether a page from origin may call the gateway.
func (g *Gateway) allowedOrigin(origin string) bool {
	if origin == "" || len(g.opts.cors) == 0 {
		return false
	}
	return slices.Contains(g.opts.cors, "*") || slices.Contains(g.opts.cors, origin) ||
		slices.Contains(g.opts.cors, origin+"/")
}

// serveCORS adds the CORS headers to the answer to a request from an
// allowed origin, and answers a preflight request; it reports whether it
// answered. A preflight from an origin not allowed gets 403.
func (g *Gateway) serveCORS(w http.ResponseWriter, r *http.Request) bool {
	if len(g.opts.cors) == 0 {
		return false
	}
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	allowed := g.allowedOrigin(origin)
	if allowed {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false // not a preflight
	}
	if !allowed {
		writeJSON(w, http.StatusForbidden, fail(null, CodeInvalidRequest, fmt.Sprintf("origin %q may not call this gateway", origin), "tether.bad-request"))
		return true
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", corsMethods)
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
