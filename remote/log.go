package remote

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tether-go/tether/broker"
)

// linkLog writes what a Client's link does to the client's logger
// (WithLogger): one line per transition, and, while an outage lasts, its
// failed attempts and refusals at most one warning per backoff cap (the
// others at debug), so that a server down for an hour does not flood the
// log. Only the client's run goroutine uses it.
type linkLog struct {
	l *slog.Logger
	// quiet is the shortest wait the backoff's cap gives (Max less its
	// jitter): warnings of one outage are at least this far apart.
	quiet    time.Duration
	warned   time.Time // when the last warning of the current outage went out
	failures int       // failed attempts since the last link
}

// newLinkLog returns the link log of a client with options o.
func newLinkLog(o *options) linkLog {
	return linkLog{l: o.logger, quiet: time.Duration(float64(o.backoff.Max) * (1 - o.backoff.Jitter))}
}

// connecting logs a dial pass: at info for the client's first and after a
// lost link, at debug for the retries of an outage.
func (g *linkLog) connecting(where string) {
	if g.failures == 0 {
		g.l.Info("tether: client connecting", "server", where)
		return
	}
	g.l.Debug("tether: client dialling again", "server", where, "failed_attempts", g.failures)
}

// failed logs a failed dial pass: a refusal or the outage's first failure
// at warn, then at most one warning per backoff cap.
func (g *linkLog) failed(where string, err error, refused bool) {
	g.failures++
	level, msg := slog.LevelDebug, "tether: client cannot connect"
	if refused {
		msg = "tether: the server refused this client"
	}
	if now := time.Now(); g.failures == 1 || now.Sub(g.warned) >= g.quiet {
		level, g.warned = slog.LevelWarn, now
	}
	g.l.Log(context.Background(), level, msg, "server", where, "failed_attempts", g.failures, "err", err)
}

// connected logs a new link, and a failover when a client following a
// resolver (from set) reached another server than its last one.
func (g *linkLog) connected(ep Endpoint, name string, from *Endpoint) {
	if from != nil {
		g.l.Info("tether: client failed over to another server", "from", from.String(), "to", ep.String())
	}
	attrs := []any{"server", ep.String()}
	if name != "" {
		attrs = append(attrs, "name", name) // the name the server announced
	}
	g.l.Info("tether: client connected", append(attrs, "failed_attempts", g.failures)...)
	g.failures = 0
}

// lost logs the end of a link: at info when its server went away (it
// drains, and the client dials again at once), at warn otherwise.
func (g *linkLog) lost(ep Endpoint, err error, away bool) {
	if away {
		g.l.Info("tether: server going away, client dialling again", "server", ep.String(), "err", err)
		return
	}
	g.l.Warn("tether: client lost its link", "server", ep.String(), "err", err)
}

// closed logs the client's end.
func (g *linkLog) closed() { g.l.Info("tether: client closed") }

// serverName names what the client dials, for the log: the one server of
// Connect or of a Pool's client (its address, and its ID when that is not
// the address), or what where says for ConnectAny.
func (cl *Client) serverName() string {
	eps, _ := cl.eps.get()
	if cl.resolver != nil || len(eps) != 1 {
		return cl.where()
	}
	return eps[0].String()
}

// reobtainFailed logs, at warn, that r could not obtain its target again
// on a new link, once per distinct failure (a caller retrying in a loop
// logs it once); failures that are the link's (logged as such), the
// caller's context or the client's Close are not logged.
func (r *Ref) reobtainFailed(ctx context.Context, err error) {
	if ctx.Err() != nil || errors.Is(err, ErrDisconnected) || errors.Is(err, broker.ErrConnectionLost) ||
		errors.Is(err, broker.ErrClosed) {
		return
	}
	r.mu.Lock()
	again := r.target != nil // a first obtain's failure is the caller's error alone
	same := r.failed == err.Error()
	r.failed = err.Error()
	r.mu.Unlock()
	if again && !same {
		r.cl.opts.logger.Warn("tether: a reference could not be obtained again", "ref", r.String(), "err", err)
	}
}
