package gateway

import (
	"context"
	"net/http"

	"github.com/tether-go/tether/broker"
)

// HealthPath is where the gateway answers health probes: GET (or HEAD)
// /healthz.
const HealthPath = "/healthz"

// healthBody is the JSON body of an answer to a health probe.
type healthBody struct {
	// Status is the upstream server's status, "serving" or "draining"
	// (broker.HealthReport), or "unreachable" when the gateway has no
	// link to it or it did not answer, or "closed" for a closed gateway.
	Status string `json:"status"`
	// Link is the state of the gateway's link to the server
	// (remote.State: "connected", "connecting", "waiting", ...).
	Link string `json:"link"`
}

// serveHealth answers a health probe: 200 when the upstream server is
// connected and serving, 503 otherwise (draining, out of reach, or the
// gateway closed). It asks the server (broker.Health) each time, within
// the gateway's timeout. It takes no bearer token, so that a load
// balancer's probe can call it, and says nothing but the two states.
func (g *Gateway) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, healthBody{Status: "unknown", Link: g.cl.State().String()})
		return
	}
	body := healthBody{Status: "unreachable", Link: g.cl.State().String()}
	if g.closed() {
		body.Status = "closed"
	} else if conn := g.cl.Conn(); conn != nil {
		ctx, cancel := context.WithTimeout(r.Context(), g.opts.timeout)
		h, err := broker.Health(ctx, conn)
		cancel()
		if err == nil {
			body.Status = h.Status
		}
	}
	status := http.StatusServiceUnavailable
	if body.Status == broker.StatusServing {
		status = http.StatusOK
	}
	writeJSON(w, status, body)
}
