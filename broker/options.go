package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"
)

// Defaults for the options below.
const (
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultDeadPeerTimeout    = 15 * time.Second
	DefaultMaxMessageSize     = 4 << 20
	DefaultMaxConcurrentCalls = 1024
	DefaultMaxExports         = 1 << 16
	DefaultMaxSubscriptions   = 1024
	// DefaultMaxHandshakes and DefaultMaxHandshakesPerHost bound the
	// handshakes a server has in progress (WithHandshakeLimits).
	DefaultMaxHandshakes        = 256
	DefaultMaxHandshakesPerHost = 64
)

// minDeadPeerTimeout bounds how aggressive keepalives may be.
const minDeadPeerTimeout = 200 * time.Millisecond

// An Option configures a connection (Dial, NewConn) or a server (NewServer).
// Options that concern only one side say so, and giving one to the other
// side is an error (Dial and NewConn return it; Serve and ServeConn report
// it), never ignored.
type Option interface{ apply(*options) }

// side is where an option applies.
type side uint8

const (
	bothSides  side = iota
	dialSide        // Dial, NewConn (and remote.Connect)
	serverSide      // NewServer
)

func (s side) String() string {
	if s == serverSide {
		return "a server (NewServer)"
	}
	return "a dialer (Dial, NewConn, remote.Connect)"
}

// option is an Option with the name its errors give and the side it
// applies to.
type option struct {
	name string
	only side
	set  func(*options)
}

func (op option) apply(o *options) {
	if op.only != bothSides && op.only != o.side {
		o.fail(fmt.Errorf("tether: %s applies to %v, not to %v: remove it here", op.name, op.only, o.side))
		return
	}
	op.set(o)
}

type options struct {
	name               string
	token              string
	tlsConfig          *tls.Config
	handshakeTimeout   time.Duration
	deadPeerTimeout    time.Duration
	writeTimeout       time.Duration
	maxMessageSize     int
	maxCalls           int
	maxExports         int
	maxSubscriptions   int
	tracebacks         bool
	logger             *slog.Logger
	root               any
	msgStreamThreshold int
	maxHandshakes      int // a server's handshakes in progress, in all
	maxHostHandshakes  int // and from one source address
	authenticator      Authenticator
	realm              Realm
	clientICs          []Interceptor // WithClientInterceptors
	serverICs          []Interceptor // WithServerInterceptors
	side               side
	err                error // first invalid option
}

// fail records an invalid option; the first one is reported.
func (o *options) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// ErrInvalidOption reports an option that cannot be used: an invalid value,
// an option given to the side it does not apply to (a server option to
// Dial, say), or options that contradict each other. Dial, NewConn and
// VerifyDialOptions return it; a server reports it from Serve, which then
// closes its listener at once, and from ServeConn. The message names the
// option and says what to change.
var ErrInvalidOption = errors.New("tether: invalid option")

// optionError is an invalid option: its message says which and what to
// do, and it matches ErrInvalidOption.
type optionError struct{ err error }

func (e *optionError) Error() string        { return e.err.Error() }
func (e *optionError) Unwrap() error        { return e.err }
func (e *optionError) Is(target error) bool { return target == ErrInvalidOption }

// buildOptions applies opts for side s, then validates them.
func buildOptions(s side, opts []Option) (*options, error) {
	o := &options{side: s}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(o)
		}
	}
	if err := o.validate(); err != nil {
		return o, &optionError{err}
	}
	return o, nil
}

// validate fills in defaults for zero values and rejects nonsense.
func (o *options) validate() error {
	if o.err != nil {
		return o.err
	}
	if err := o.checkSigns(); err != nil {
		return err
	}
	if err := o.checkConsistent(); err != nil {
		return err
	}
	o.fillDefaults()
	return o.checkMinimums()
}

// checkSigns rejects negative values, which no option takes.
func (o *options) checkSigns() error {
	for _, v := range []struct {
		name string
		neg  bool
	}{
		{"WithHandshakeTimeout", o.handshakeTimeout < 0},
		{"WithDeadPeerTimeout", o.deadPeerTimeout < 0},
		{"WithWriteTimeout", o.writeTimeout < 0},
		{"WithMaxMessageSize", o.maxMessageSize < 0},
		{"WithMaxConcurrentCalls", o.maxCalls < 0},
		{"WithMaxExports", o.maxExports < 0},
		{"WithMaxSubscriptions", o.maxSubscriptions < 0},
		{"WithHandshakeLimits", o.maxHandshakes < 0 || o.maxHostHandshakes < 0},
	} {
		if v.neg {
			return fmt.Errorf("tether: %s: negative option value: give a positive value, or 0 for the default", v.name)
		}
	}
	return nil
}

// checkConsistent rejects options that cannot work together or do not
// fit in a handshake.
func (o *options) checkConsistent() error {
	// Both travel as CBOR text in the handshake, which the peer would
	// refuse as a protocol violation: a mistake here, not an outage there.
	for _, x := range [...]struct{ opt, s string }{{"WithName: the name", o.name}, {"WithToken: the token", o.token}} {
		if !utf8.ValidString(x.s) {
			return fmt.Errorf("tether: %s is not valid UTF-8, which the handshake's text must be", x.opt)
		}
	}
	if len(o.name) > maxIdentityName {
		return fmt.Errorf("tether: WithName: the name is %d bytes; a name may have at most %d", len(o.name), maxIdentityName)
	}
	if n := len(o.name) + len(o.token) + 32; o.side == dialSide && n > handshakeMax {
		return fmt.Errorf("tether: WithToken: the token makes the handshake about %d bytes; a server reads at most %d: use a shorter token", n, handshakeMax)
	}
	if o.authenticator != nil && o.token != "" {
		return errors.New("tether: WithToken and WithAuthenticator both given to a server: " +
			"the authenticator decides alone (it sees the token a peer sent in Credentials.Token)")
	}
	if o.side == serverSide && o.tlsConfig != nil && len(o.tlsConfig.Certificates) == 0 &&
		o.tlsConfig.GetCertificate == nil && o.tlsConfig.GetConfigForClient == nil {
		return errors.New("tether: WithTLS on a server needs a certificate in the config (Certificates or GetCertificate)")
	}
	return nil
}

// fillDefaults gives every option left at zero its default.
func (o *options) fillDefaults() {
	orDefault(&o.handshakeTimeout, DefaultHandshakeTimeout)
	orDefault(&o.deadPeerTimeout, DefaultDeadPeerTimeout)
	orDefault(&o.writeTimeout, o.deadPeerTimeout)
	orDefault(&o.maxMessageSize, DefaultMaxMessageSize)
	orDefault(&o.maxCalls, DefaultMaxConcurrentCalls)
	orDefault(&o.maxExports, DefaultMaxExports)
	orDefault(&o.maxSubscriptions, DefaultMaxSubscriptions)
	orDefault(&o.maxHandshakes, DefaultMaxHandshakes)
	orDefault(&o.maxHostHandshakes, DefaultMaxHandshakesPerHost)
	orDefault(&o.msgStreamThreshold, defaultMsgStreamThreshold)
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
}

// orDefault sets *v to d when it is zero: a zero option means "the
// default".
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// checkMinimums rejects values below what the connection needs to work.
func (o *options) checkMinimums() error {
	if o.deadPeerTimeout < minDeadPeerTimeout {
		return fmt.Errorf("tether: WithDeadPeerTimeout: %v is below the minimum %v", o.deadPeerTimeout, minDeadPeerTimeout)
	}
	if o.maxMessageSize < 1024 {
		return fmt.Errorf("tether: WithMaxMessageSize: %d bytes is below the minimum, 1 KiB", o.maxMessageSize)
	}
	return nil
}

// WithName sets the name this side announces in the handshake. Handlers on
// the far side see it in remoteable.Peer.Name, as verified or not (see
// remoteable.Peer.VerifiedBy): a server verifies it with WithAuthenticator
// (a per-peer token table, say) or against the dialer's TLS certificate,
// which must then give this name. It must be valid UTF-8, as the token
// must (else ErrInvalidOption).
func WithName(name string) Option {
	return option{"WithName", bothSides, func(o *options) { o.name = name }}
}

// WithToken sets a secret. A dialer sends it in its handshake: the shared
// token of a server with WithToken, or its own token for a server that
// verifies peers one by one (WithAuthenticator with Tokens). A server with
// WithToken refuses dialers whose token differs (they get ErrAuthFailed);
// a shared token admits a peer but does not verify its name. An empty
// token on a server admits everyone.
func WithToken(token string) Option {
	return option{"WithToken", bothSides, func(o *options) { o.token = token }}
}

// WithTLS runs TLS with config over every connection: Dial and NewConn as
// its client, a server as its server over each accepted connection (the
// config then needs a certificate; to require client certificates, set
// ClientAuth). A server may instead serve a TLS listener (tls.NewListener)
// without this option. Handlers see the peer's certificate state in
// remoteable.Peer.TLS, and a verified certificate names the peer (see
// remoteable.Peer).
func WithTLS(config *tls.Config) Option {
	return option{"WithTLS", bothSides, func(o *options) { o.tlsConfig = config }}
}

// WithHandshakeTimeout bounds the TLS and Tether handshakes (default 10 s).
func WithHandshakeTimeout(d time.Duration) Option {
	return option{"WithHandshakeTimeout", bothSides, func(o *options) { o.handshakeTimeout = d }}
}

// WithDeadPeerTimeout sets how soon a silently dead peer (a cable pulled, a
// black-holed route) is detected: the connection ends once nothing at all
// has arrived from the peer for d. Only a silent link is pinged: the dialer
// pings after d/2 of silence, the accepting side after 3d/4 (which a
// dialer's pings keep it from reaching); a link that carries traffic is not
// pinged. Default 15 s; minimum 200 ms.
func WithDeadPeerTimeout(d time.Duration) Option {
	return option{"WithDeadPeerTimeout", bothSides, func(o *options) { o.deadPeerTimeout = d }}
}

// WithWriteTimeout bounds every write to the peer. A peer that stops reading
// long enough for a write to exceed it is disconnected with ErrWriteTimeout.
// A large message is one write: on a slow link, make the timeout longer than
// the largest message takes to send. Writing a message already started is
// bounded by this timeout, not by the caller's context. Default: the
// dead-peer timeout.
func WithWriteTimeout(d time.Duration) Option {
	return option{"WithWriteTimeout", bothSides, func(o *options) { o.writeTimeout = d }}
}

// WithMaxMessageSize sets the largest message this side accepts (default
// 4 MiB). It is announced in the handshake, so the far side refuses to send
// larger messages with ErrMessageTooLarge instead of being disconnected.
func WithMaxMessageSize(n int) Option {
	return option{"WithMaxMessageSize", bothSides, func(o *options) { o.maxMessageSize = n }}
}

// WithMaxConcurrentCalls bounds the calls one peer may have running on this
// side at once (default 1024). Calls over the quota fail at once with
// ErrTooManyCalls.
func WithMaxConcurrentCalls(n int) Option {
	return option{"WithMaxConcurrentCalls", bothSides, func(o *options) { o.maxCalls = n }}
}

// WithMaxExports bounds how many distinct objects this side holds exported
// to one peer (default 65536). A call whose arguments or result would export
// more fails with ErrTooManyReferences.
func WithMaxExports(n int) Option {
	return option{"WithMaxExports", bothSides, func(o *options) { o.maxExports = n }}
}

// WithMaxSubscriptions bounds how many subscriptions to this side's
// observable models (cache.Map, cache.Value and mirrors of them) one peer
// may hold at once (default DefaultMaxSubscriptions, 1024). Each mirror the
// peer keeps of a model here is one; a relay holds one per model whatever
// the number of mirrors behind it. A Subscribe over the quota, and so the
// call that would give the peer one more mirror, fails with
// ErrTooManyReferences. Every subscription costs this side the same small
// amount whatever the model's size, while its subscriber is silent too;
// the quota bounds their number.
func WithMaxSubscriptions(n int) Option {
	return option{"WithMaxSubscriptions", bothSides, func(o *options) { o.maxSubscriptions = n }}
}

// WithTracebacks makes handler panics carry their stack trace to the caller
// (RemoteError.Traceback). Off by default: a trace reveals code layout.
func WithTracebacks(on bool) Option {
	return option{"WithTracebacks", bothSides, func(o *options) { o.tracebacks = on }}
}

// WithLogger routes the connection's diagnostics, including yamux's, into
// logger. By default nothing is logged.
func WithLogger(logger *slog.Logger) Option {
	return option{"WithLogger", bothSides, func(o *options) { o.logger = logger }}
}

// WithHandshakeLimits bounds the handshakes a server's Serve has in
// progress: at most total at once, and at most perHost from one source IP
// address (zero means the default: 256 and 64). A connection accepted over
// either limit is closed at once, before anything is read from it, and
// counted in ServerStats.Refused; a dialer sees its connection closed (its
// error says the server may be over its limits) and may retry
// (remote.Client does, with backoff). The limits bound what
// peers that have not authenticated can cost the server (see
// docs/security.md): each handshake in progress may cost a few tens of KiB
// for up to the handshake timeout. Connections given to ServeConn are not
// counted.
func WithHandshakeLimits(total, perHost int) Option {
	return option{"WithHandshakeLimits", serverSide, func(o *options) {
		o.maxHandshakes, o.maxHostHandshakes = total, perHost
	}}
}

// WithRoot sets the object a dialer publishes to the server: the server's
// (*Conn).Root() for this connection refers to it. A server's root is the
// argument of NewServer.
func WithRoot(root any) Option {
	return option{"WithRoot", dialSide, func(o *options) { o.root = root }}
}

// VerifyDialOptions reports the error Dial would return for opts without
// dialing: an invalid value, or an option that applies only to a server.
// remote.Connect uses it to fail at once on options it could never dial
// with.
func VerifyDialOptions(opts ...Option) error {
	_, err := buildOptions(dialSide, opts)
	return err
}
