package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/internal/linkwait"
	"github.com/tether-go/tether/remoteable"
	"github.com/tether-go/tether/signals"
)

// ErrDisconnected reports a call made while the client is waiting out a
// backoff after a failed dial: the link is down and no attempt is under way.
var ErrDisconnected = broker.NewError(broker.Unavailable, errors.New("tether: disconnected"))

func init() { remoteable.RegisterError("tether.disconnected", ErrDisconnected) }

// linkDown is the error of a call made while the client is backing off: it
// matches ErrDisconnected. Its text gives the call, the server's address
// and why the last attempt failed, for this process; a peer of this
// process (which relays the server) reads only which hop cannot reach
// which server, and for what (Redacted).
type linkDown struct {
	addr   string
	server string // the server's announced name, if it ever connected
	target string // what the call needed, if known: a manager's name
	method string // the method called, if known
	last   error
}

var _ hop.Failure = (*linkDown)(nil)

func (e *linkDown) Error() string {
	what := "the call"
	switch {
	case e.method != "" && e.target != "":
		what = fmt.Sprintf("%q on %s", e.method, e.target)
	case e.method != "":
		what = strconv.Quote(e.method)
	case e.target != "":
		what = "the call for " + e.target
	}
	at := e.addr
	if e.server != "" {
		at += fmt.Sprintf(" (server %q)", e.server)
	}
	last := "no cause given"
	if e.last != nil {
		last = strings.TrimPrefix(e.last.Error(), "tether: ")
	}
	return fmt.Sprintf("%v: %s was not sent: the client is waiting to redial %s after a failed attempt (%s); "+
		"retry later, or make the call with remote.WaitForLink(ctx) to wait for the link", ErrDisconnected, what, at, last)
}

// Unwrap returns ErrDisconnected and, when the last attempt failed because
// the resolver named no server, that failure too (ErrNoEndpoints, and
// ErrResolver when the resolver could not learn the set): a caller can
// tell a fleet with no server named from servers that are down. Other
// causes of the last attempt (a dial's timeout, say) are only quoted, so
// that they are not taken for the call's own.
func (e *linkDown) Unwrap() []error {
	if errors.Is(e.last, ErrNoEndpoints) {
		return []error{ErrDisconnected, e.last}
	}
	return []error{ErrDisconnected}
}

// Redacted implements hop.Failure.
func (e *linkDown) Redacted(hopName string) string {
	what := "its server"
	if e.server != "" {
		what = "server " + strconv.Quote(e.server)
	}
	msg := fmt.Sprintf("%v: %s cannot reach %s", ErrDisconnected, hopName, what)
	if e.target != "" {
		msg += " for " + e.target
	}
	if e.method != "" {
		msg += fmt.Sprintf(": %q was not sent", e.method)
	}
	return msg
}

// withMethod returns err naming method as the call it failed, when err is
// a linkDown that names none; other errors are returned as they are.
func withMethod(err error, method string) error { return withCall(err, method, "") }

// withCall is withMethod naming target too, when err names none.
func withCall(err error, method, target string) error {
	ld, ok := err.(*linkDown)
	if !ok {
		return err
	}
	cp := *ld
	if cp.method == "" {
		cp.method = method
	}
	if cp.target == "" {
		cp.target = target
	}
	return &cp
}

// State is the state of a Client's link.
type State int

const (
	// Connecting: a dial attempt is in progress. Calls wait for it.
	Connecting State = iota
	// Connected: calls go through.
	Connected
	// Waiting: backing off after a failed attempt (or a link that ended
	// within the backoff period: see Backoff). Calls fail fast with
	// ErrDisconnected unless they wait for the link.
	Waiting
	// Closed: Close was called.
	Closed
	// Refused: the server refused the last attempt: a wrong token or
	// certificate (broker.ErrAuthFailed, which a TLS verification
	// failure matches too), another protocol version
	// (broker.ErrVersionMismatch), or a realm with no root for this
	// client (remoteable.ErrAccessDenied). Such a refusal lasts until
	// someone changes a configuration, so it is not an outage: every call
	// fails at once with the refusal, even one that waits for the link,
	// and the client redials at its backoff's cap in case the server is
	// fixed.
	Refused
)

// String returns the state's name in lower case, as logs print it.
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Waiting:
		return "waiting"
	case Closed:
		return "closed"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Client keeps a connection to a server alive: it dials in the background
// and redials after every outage until Close. A Client made by Connect
// dials one address; one made by ConnectAny holds one link at a time to
// one of the servers a Resolver names, and fails over to another.
type Client struct {
	// Connected is emitted with the new connection after each successful
	// dial, once per transition. It is emitted on the client's own
	// goroutine just after the state turns Connected, so State and
	// WaitConnected may report the link before the handlers have run;
	// handlers may call through the client (the link is already usable).
	Connected signals.Signal[*broker.Conn]
	// Disconnected is emitted with the cause when a connection is lost,
	// once per transition.
	Disconnected signals.Signal[error]
	// Refused is emitted with the refusal each time the server refuses a
	// dial attempt (see the Refused state): at most once per backoff cap.
	Refused signals.Signal[error]

	opts     *options
	registry *Registry
	resolver Resolver      // nil for Connect: eps is then its one endpoint
	resolved chan struct{} // closed when the resolver has returned (ConnectAny)
	// seen is the eps.changed channel of the last dial pass: a change to
	// the set after it ends a backoff (only run's goroutine uses it).
	seen chan struct{}

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	done      chan struct{} // closed when the dial loop has returned
	closeOnce sync.Once
	closed    chan struct{} // closed when Close has finished

	mu       sync.Mutex
	state    State
	changed  chan struct{} // closed and replaced at every state change
	conn     *broker.Conn  // while Connected
	lastErr  error         // why the last attempt or connection failed
	attempts int           // failed attempts since the last success
	old      []*broker.Conn
	server   string // the name the server announced at the last successful dial
	connects int64  // successful dials
	failures int64  // failed dials
	refusals int64  // dials the server refused
	eps      endpointSet
	endpoint Endpoint // the server of the current link, or of the last one

	mirrors relayMirrors // the models this client relays, one mirror each
	log     linkLog      // only run's goroutine uses it
}

// Connect returns a Client for the server at addr and starts dialing in the
// background. It fails only on bad options; ctx is not used after it returns.
func Connect(ctx context.Context, network, addr string, opts ...Option) (*Client, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cl := newClient(o, nil)
	cl.eps.fixed(Endpoint{Network: network, Addr: addr, ID: network + "://" + addr})
	go cl.run()
	return cl, nil
}

// newClient builds a client that follows r (nil: the caller sets its one
// endpoint); the caller starts its loops.
func newClient(o *options, r Resolver) *Client {
	cctx, cancel := context.WithCancel(context.Background())
	cl := &Client{
		opts: o, resolver: r,
		ctx: cctx, cancel: cancel,
		done:    make(chan struct{}),
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
		eps:     endpointSet{changed: make(chan struct{})},
		log:     newLinkLog(o),
	}
	cl.registry = &Registry{cl: cl, refs: map[string]*Ref{}}
	for _, fn := range o.watch {
		fn(cl)
	}
	return cl
}

// State returns the link's current state.
func (cl *Client) State() State {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.state
}

// WaitForStateChange blocks until the state differs from from, and reports
// true; or until ctx is done, and reports false. A refused attempt moves
// the state to Refused, whose error Err returns.
func (cl *Client) WaitForStateChange(ctx context.Context, from State) bool {
	for {
		cl.mu.Lock()
		st, ch := cl.state, cl.changed
		cl.mu.Unlock()
		if st != from {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// WaitConnected blocks until the client is Connected, the client is closed
// (broker.ErrClosed), the server refuses an attempt (the refusal: see
// Refused) or ctx is done. While the client is Refused it returns the
// refusal at once; to wait for the server to accept the client after all
// (someone fixed its configuration), wait with WaitForStateChange for the
// state to leave Refused rather than call WaitConnected in a loop.
func (cl *Client) WaitConnected(ctx context.Context) error {
	_, err := cl.link(WaitForLink(ctx))
	return err
}

// Err returns the error a call made now without waiting would fail with:
// the refusal while Refused (it matches broker.ErrAuthFailed,
// broker.ErrVersionMismatch or remoteable.ErrAccessDenied), an error
// matching ErrDisconnected while Waiting, broker.ErrClosed once Closed,
// and nil while Connecting or Connected.
func (cl *Client) Err() error {
	cl.mu.Lock()
	st, last, server := cl.state, cl.lastErr, cl.server
	cl.mu.Unlock()
	switch st {
	case Refused:
		return last
	case Waiting:
		return &linkDown{addr: cl.where(), server: server, last: last}
	case Closed:
		return errClientClosed()
	}
	return nil
}

// errClientClosed is the error of a call on a closed client.
func errClientClosed() error {
	return fmt.Errorf("%w: this remote.Client was closed; make a new one with remote.Connect", broker.ErrClosed)
}

// Conn returns the current connection, or nil when not Connected.
func (cl *Client) Conn() *broker.Conn {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.conn
}

// ClientStats is a snapshot of a client's link: its state, how often it
// connected and failed to, and the current connection's resources (zero
// while there is none). It encodes as JSON for expvar.
type ClientStats struct {
	State        string           `json:"state"`
	Connects     int64            `json:"connects"`            // successful dials
	Reconnects   int64            `json:"reconnects"`          // successful dials after the first
	DialFailures int64            `json:"dialFailures"`        // failed dials, refused ones included
	Refusals     int64            `json:"refusals"`            // dials the server refused (see Refused)
	LastError    string           `json:"lastError,omitempty"` // why the last attempt or connection failed
	Conn         broker.ConnStats `json:"conn"`
}

// Stats returns a snapshot of the client's link.
func (cl *Client) Stats() ClientStats {
	cl.mu.Lock()
	st := ClientStats{State: cl.state.String(), Connects: cl.connects, DialFailures: cl.failures, Refusals: cl.refusals}
	if cl.lastErr != nil {
		st.LastError = cl.lastErr.Error()
	}
	conn := cl.conn
	cl.mu.Unlock()
	if st.Connects > 0 {
		st.Reconnects = st.Connects - 1
	}
	if conn != nil {
		st.Conn = conn.Stats()
	}
	return st
}

// Registry returns the server's registry, wrapped: lookups return *Ref
// wrappers that survive outages. It can itself be published (a relay).
func (cl *Client) Registry() *Registry { return cl.registry }

// Close stops redialing, closes the current connection and waits for the
// client's goroutines and connections to finish. It is idempotent; every
// call returns once all of that is done.
func (cl *Client) Close() error {
	cl.closeOnce.Do(func() {
		cl.mirrors.closeAll()
		cl.cancel()
		<-cl.done
		if cl.resolved != nil {
			<-cl.resolved
		}
		cl.mu.Lock()
		old := cl.old
		cl.old = nil
		cl.mu.Unlock()
		for _, c := range old {
			c.Close() // one whose server went away may still be draining
			<-c.Done()
		}
		close(cl.closed)
	})
	<-cl.closed
	return nil
}

func (cl *Client) setState(s State, conn *broker.Conn, err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.state, cl.conn = s, conn
	if err != nil {
		cl.lastErr = err
	}
	close(cl.changed)
	cl.changed = make(chan struct{})
}

// run dials, waits for the connection to end, and dials again, until Close.
//
// Backoff: a failed dial waits Backoff.delay(n) for its number n since the
// last steady link, and a refused one waits the cap (a refusal lasts until
// someone fixes a configuration). A link counts as steady, and starts the
// backoff over, once it has stayed up for the backoff's cap (Backoff.Max);
// a link that ends sooner counts as a failed attempt and, unless it is the
// first since the backoff started over, is waited out, so a server that
// accepts connections and drops them, at once or after a while, drives the
// backoff to its cap instead of being redialled in a storm. A steady link
// that ends is redialled at once, and so is the first short one.
func (cl *Client) run() {
	defer close(cl.done)
	defer cl.setState(Closed, nil, broker.ErrClosed)
	defer cl.log.closed()
	for {
		cl.setState(Connecting, nil, nil)
		prev := cl.lastEndpoint()
		conn, err := cl.dialPass()
		if cl.ctx.Err() != nil {
			if conn != nil {
				conn.Close()
				<-conn.Done()
			}
			return
		}
		var n int
		wait := true
		if err != nil {
			n = cl.dialFailed(err)
		} else {
			cl.connected(conn, prev)
			steady, open := cl.hold(conn)
			if !open {
				return
			}
			n, wait = cl.linkEnded(conn, steady)
		}
		if wait && !cl.sleep(n) {
			return
		}
	}
}

// dial makes one attempt at ep, bounded by the dial timeout and by Close.
func (cl *Client) dial(ep Endpoint) (*broker.Conn, error) {
	dctx, cancel := context.WithTimeout(cl.ctx, cl.opts.dialTimeout)
	defer cancel()
	return broker.Dial(dctx, ep.Network, ep.Addr, cl.opts.broker...)
}

// dialFailed counts a failed attempt, moves to Waiting, or to Refused for
// a refusal, and returns the attempt number whose delay run waits out.
func (cl *Client) dialFailed(err error) int {
	refused := refusedByAll(err)
	cl.mu.Lock()
	n := cl.attempts
	cl.attempts++
	cl.failures++
	if refused {
		cl.refusals++
		n = atCap
	}
	cl.mu.Unlock()
	cl.log.failed(cl.serverName(), err, refused)
	if !refused {
		cl.setState(Waiting, nil, err)
		return n
	}
	cl.setState(Refused, nil, err)
	cl.Refused.Emit(err)
	return n
}

// connected records a new link and announces it; prev is the server of
// the link before it, if any.
func (cl *Client) connected(conn *broker.Conn, prev Endpoint) {
	cl.mu.Lock()
	cl.connects++
	cl.server = conn.Peer().Name
	cl.old = append(cl.old, conn)
	ep := cl.endpoint
	cl.mu.Unlock()
	var from *Endpoint
	if cl.resolver != nil && prev.ID != "" && prev.ID != ep.ID {
		from = &prev // ConnectAny moved to another server
	}
	cl.log.connected(ep, conn.Peer().Name, from)
	cl.setState(Connected, conn, nil)
	cl.Connected.Emit(conn)
}

// hold waits for conn to end, starting the backoff over once the link
// counts as steady. It reports whether the link became steady, and false
// for open when the client was closed meanwhile (conn is then closed).
func (cl *Client) hold(conn *broker.Conn) (steady, open bool) {
	// A link is steady once it outlived the backoff's cap: measured
	// against the current (short) delay instead, a server that drops
	// every link just after it would reset the backoff each time and
	// be redialled at the initial rate forever.
	//
	// A timer that ends late (by more than an eighth of the cap) means
	// that this process did not run meanwhile: the link's end may have
	// come then and not be read yet, so it is not judged steady on that
	// firing. It is looked at again a quarter of the cap later, once: a
	// link still up then is steady. (A stall of the test process made a
	// link dropped after 70 ms look steady at the 200 ms cap:
	// TestAcceptThenDropIsNoStorm.)
	grace := cl.opts.backoff.Max / 4
	due := time.Now().Add(cl.opts.backoff.Max)
	timer := cl.opts.clock.After(cl.opts.backoff.Max)
	late := func() bool { return time.Since(due) > cl.opts.backoff.Max/8 }
	for {
		select {
		case <-timer:
			if late() && grace > 0 {
				due = time.Now().Add(grace)
				timer = cl.opts.clock.After(grace)
				grace = 0
				continue
			}
			timer = nil
			cl.startBackoffOver()
		case <-conn.Closed():
			select {
			case <-timer: // became steady as it ended, unless it fired late
				if !late() || grace == 0 {
					cl.startBackoffOver()
					timer = nil
				}
			default:
			}
			return timer == nil, true
		case <-conn.GoingAway():
			// The server drains: the link is over for new calls, and
			// the calls in flight finish on it by themselves.
			return timer == nil, true
		case <-cl.ctx.Done():
			conn.Close()
			cl.Disconnected.Emit(broker.ErrClosed)
			return false, false
		}
	}
}

// startBackoffOver resets the count of failed attempts after a steady link.
func (cl *Client) startBackoffOver() {
	cl.mu.Lock()
	cl.attempts = 0
	cl.mu.Unlock()
}

// linkEnded announces the end of conn and decides what follows: it
// returns the attempt number to wait out, and whether to wait at all.
//
// A link whose server said it is going away (it drains) is no fault: it is
// redialled at once, neither counted as a failed attempt nor waited out.
func (cl *Client) linkEnded(conn *broker.Conn, steady bool) (n int, wait bool) {
	cause, away := linkCause(conn)
	cl.mu.Lock()
	n = cl.attempts
	if !steady && !away {
		cl.attempts++ // up for less than the cap: it counts as a failed attempt
	}
	cl.mu.Unlock()
	// A steady link, or the first short one since: redialled at once (an
	// outage after a good start); later short ones are waited out, each
	// longer than the last.
	wait = !steady && !away && n > 0
	next := Connecting
	if wait {
		next = Waiting
	}
	cl.log.lost(cl.lastEndpoint(), cause, away)
	cl.setState(next, nil, cause)
	cl.Disconnected.Emit(cause)
	cl.forget(conn)
	return n, wait
}

// lastEndpoint returns the server of the current link, or of the last
// one (the zero Endpoint before the first).
func (cl *Client) lastEndpoint() Endpoint {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.endpoint
}

// linkCause is why conn is over for the client, and whether its server
// went away: then conn may still be finishing the calls in flight, and the
// cause matches broker.ErrGoingAway even before conn ends.
func linkCause(conn *broker.Conn) (error, bool) {
	select {
	case <-conn.GoingAway():
	default:
		// A server that began to drain during the handshake says so in
		// its goodbye.
		err := conn.Err()
		return err, errors.Is(err, broker.ErrGoingAway)
	}
	if err := conn.Err(); err != nil {
		return err, true
	}
	return fmt.Errorf("%w: server %q is shutting down; dialling again", broker.ErrGoingAway, conn.Peer().Name), true
}

// atCap is an attempt number whose delay is the backoff's cap.
const atCap = 1 << 30

// sleep waits out the delay after failed attempt number n, reporting false
// if the client was closed meanwhile. A resolver that names a changed set
// of servers meanwhile ends the wait: the new ones deserve a try.
func (cl *Client) sleep(n int) bool {
	select {
	case <-cl.opts.clock.After(cl.opts.backoff.delay(n, cl.opts.rand)):
		return true
	case <-cl.seen:
		return true
	case <-cl.ctx.Done():
		return false
	}
}

// isRefusal reports whether a dial failed because the server refused it
// (or TLS did not verify a certificate): see Refused.
func isRefusal(err error) bool {
	return errors.Is(err, broker.ErrAuthFailed) || errors.Is(err, broker.ErrVersionMismatch) ||
		errors.Is(err, remoteable.ErrAccessDenied)
}

// forget drops a dead connection from those Close waits for, once it is Done.
func (cl *Client) forget(dead *broker.Conn) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	kept := cl.old[:0]
	for _, c := range cl.old {
		select {
		case <-c.Done():
			continue
		default:
		}
		kept = append(kept, c)
	}
	cl.old = kept
}

// WaitForLink returns a context under which calls made while the client is
// Waiting (backing off) wait for the link to come back instead of failing
// with ErrDisconnected. The wait is bounded by ctx, and ends with the
// refusal if the server refuses the client (see Refused).
//
// The wish travels with every call made under the context, as its deadline
// does: a relay that forwards such a call while its own upstream link is
// down waits for that link too, bounded by the caller's deadline, instead
// of failing the call with ErrDisconnected.
func WaitForLink(ctx context.Context) context.Context {
	return linkwait.With(ctx)
}

func waitsForLink(ctx context.Context) bool { return linkwait.Wanted(ctx) }

// link returns the connection to use for a call made now, applying the
// state rules: wait while Connecting, fail fast while Waiting (unless ctx
// waits for the link), fail with the refusal while Refused (even if ctx
// waits for the link: a refusal lasts until someone fixes it), fail when
// Closed.
func (cl *Client) link(ctx context.Context) (*broker.Conn, error) {
	for {
		cl.mu.Lock()
		st, conn, ch, last, server := cl.state, cl.conn, cl.changed, cl.lastErr, cl.server
		cl.mu.Unlock()
		switch st {
		case Connected:
			select {
			case <-conn.Closed():
				// Dead, and the loop has not noticed yet: wait for it.
			case <-conn.GoingAway():
				// Draining: the loop is about to dial again.
			default:
				return conn, nil
			}
		case Closed:
			return nil, errClientClosed()
		case Refused:
			return nil, last
		case Waiting:
			if !waitsForLink(ctx) {
				return nil, &linkDown{addr: cl.where(), server: server, last: last}
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Backoff shapes the delays between failed dial attempts: Initial after the
// first failure, multiplied by Multiplier after each further one, capped at
// Max, each randomised by ±Jitter (a fraction). Zero fields take the
// defaults: 100 ms, 10 s, 1.6 and 0.5. The jitter is wide so that clients
// that lost one server together spread out on their way back: with ±20%,
// 1,000 clients kept redialling in bunches a step apart and most of each
// bunch was turned away over the server's handshake limits (docs/benchmarks.md,
// storm-1000). The delays start over after a
// steady link, one that stayed up for Max; a link that ends sooner counts
// as a failed attempt. A refused attempt waits Max.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     float64
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Multiplier < 1 {
		b.Multiplier = 1.6
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = 0.5
	}
	return b
}

// delay is the wait after the failed attempt number n (0 for the first).
func (b Backoff) delay(n int, rnd func() float64) time.Duration {
	d := float64(b.Initial)
	if n >= atCap {
		d = float64(b.Max) // a refusal waits the cap, whatever the multiplier
	}
	for i := 0; i < n && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	d = min(d, float64(b.Max))
	d *= 1 + b.Jitter*(2*rnd()-1)
	return time.Duration(d)
}

// clock is what the dial loop waits with; tests substitute a fake.
type clock interface {
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Option configures Connect.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	broker      []broker.Option
	backoff     Backoff
	dialTimeout time.Duration
	relayLog    int // log size of relay mirrors; 0: the feed's default bounds
	clock       clock
	rand        func() float64
	watch       []func(*Client) // WithWatch's functions, run before the first dial
	logger      *slog.Logger    // WithLogger's; nil until given
	loggerSet   bool            // WithLogger was given (nil included, which is refused)
}

func buildOptions(opts []Option) (*options, error) {
	o := &options{}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(o)
		}
	}
	if o.dialTimeout < 0 {
		return nil, fmt.Errorf("%w: WithDialTimeout(%v): give a positive duration, or 0 for the default", broker.ErrInvalidOption, o.dialTimeout)
	}
	for _, fn := range o.watch {
		if fn == nil {
			return nil, fmt.Errorf("%w: WithWatch(nil): give the function to run on each new client", broker.ErrInvalidOption)
		}
	}
	if o.loggerSet && o.logger == nil {
		return nil, fmt.Errorf("%w: WithLogger(nil): give a *slog.Logger, or leave the option out for a silent client", broker.ErrInvalidOption)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	} else {
		// The user's own broker.WithLogger, if any, comes later and wins.
		o.broker = append([]broker.Option{broker.WithLogger(o.logger)}, o.broker...)
	}
	if o.relayLog < 0 {
		return nil, fmt.Errorf("%w: WithRelayLogSize(%d): give a positive size, or 0 for the default", broker.ErrInvalidOption, o.relayLog)
	}
	if err := broker.VerifyDialOptions(o.broker...); err != nil {
		return nil, err
	}
	if o.dialTimeout == 0 {
		o.dialTimeout = 10 * time.Second
	}
	o.backoff = o.backoff.withDefaults()
	if o.clock == nil {
		o.clock = realClock{}
	}
	if o.rand == nil {
		o.rand = rand.Float64
	}
	return o, nil
}

// WithBroker passes options to every connection the client dials (token,
// TLS, name, timeouts, limits).
func WithBroker(opts ...broker.Option) Option {
	return optionFunc(func(o *options) { o.broker = append(o.broker, opts...) })
}

// WithBackoff sets the backoff between failed dial attempts; zero fields
// keep their defaults, so a zero Backoff never means "retry at once".
func WithBackoff(b Backoff) Option {
	return optionFunc(func(o *options) { o.backoff = b })
}

// WithDialTimeout bounds each dial attempt, handshake included (default
// 10 s).
func WithDialTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.dialTimeout = d })
}

// WithRelayLogSize sets how many recent changes each mirror the client
// keeps for a relay (one per upstream model republished through its
// Registry) logs for the mirrors downstream of it, as cache.WithLogSize
// does for a model: a downstream mirror that fell behind by more (a burst
// faster than its link, or an outage) gets a snapshot instead of the
// changes. 0 means the default, a model's (cache.WithLogSize): the last
// 32,768 changes within 8 MiB; a negative size fails Connect with
// broker.ErrInvalidOption.
func WithRelayLogSize(n int) Option {
	return optionFunc(func(o *options) { o.relayLog = n })
}

// WithWatch runs fn on each new client before its first dial (Connect,
// ConnectAny, and every client of a ConnectAll pool): connect handlers to
// the client's signals there to see every transition, the first link's
// Connected included. A handler connected after Connect returned may miss
// that one, because the first dial runs in the background and can finish
// first. fn must not block or call through the client: the client's loop
// starts after it returns.
func WithWatch(fn func(cl *Client)) Option {
	return optionFunc(func(o *options) { o.watch = append(o.watch, fn) })
}

// WithLogger makes the client log what an operator wants to know (each
// message starts "tether: "): at info, a dial pass starting, a link made
// (the server, its name, the failed attempts before it), a server going
// away (it drains), ConnectAny failing over to another server, a Pool
// adding, dropping or moving a server, Close; at warn, a link lost, a
// dial pass that failed or that the server refused (the first of an
// outage, then at most one per backoff cap, the others at debug), a *Ref
// that could not obtain its target again (once per distinct failure), and
// a mirror that can no longer follow its model. Without it the client is
// silent, as the broker is. The logger is also given to every connection
// the client dials, unless WithBroker passes a broker.WithLogger of its
// own, which then gets the connections' lines (a mirror's loss among
// them). A nil logger fails Connect with broker.ErrInvalidOption.
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(o *options) { o.logger, o.loggerSet = logger, true })
}

// withClock substitutes the dial loop's clock and jitter source (tests).
func withClock(c clock, rnd func() float64) Option {
	return optionFunc(func(o *options) { o.clock, o.rand = c, rnd })
}
