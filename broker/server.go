package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server accepts Tether connections and publishes a root object (usually a
// registry) to each of them.
//
//	srv := broker.NewServer(reg)
//	go srv.Serve(ln)
//	defer srv.Close()
type Server struct {
	root any
	opts *options
	err  error // invalid options, reported by Serve
	// issuer names the server in the table of feed tokens
	// (internal/captable): a number, so that the table keeps nothing of
	// the server alive.
	issuer uint64

	ctx    context.Context // cancelled by Close: aborts handshakes
	cancel context.CancelFunc

	started time.Time // when NewServer made it, for HealthReport.Uptime

	mu         sync.Mutex
	closed     bool
	draining   bool // Shutdown began: accept nothing more
	cut        bool // Close found calls of peers unanswered
	listeners  map[net.Listener]struct{}
	conns      map[*Conn]struct{}
	handshakes int            // Serve's handshakes in progress
	perHost    map[string]int // and from each source host that has any
	handshake  sync.WaitGroup // handshakes in progress
	live       sync.WaitGroup // connections not yet Done
	// named holds the newest connection of each peer name (ConnByName).
	named map[string]*Conn

	accepted atomic.Int64 // connections that completed the handshake
	refused  atomic.Int64 // connections that did not
}

// NewServer returns a server publishing root, or with WithRealm (and a nil
// root) a root of its own to each peer. Invalid options, and a root that
// VerifyCallable refuses (an error matching ErrNotCallable), are reported
// by Serve, which then closes its listener at once, and by ServeConn.
func NewServer(root any, opts ...Option) *Server {
	o, err := buildOptions(serverSide, opts)
	switch {
	case err == nil && o.realm != nil && root != nil:
		err = &optionError{errors.New("tether: NewServer was given a root and WithRealm: the realm gives each peer its root, so pass nil")}
	case err == nil && o.realm == nil && root == nil:
		err = &notCallable{msg: "NewServer(nil): give the server a root object to publish (a registry, say), or WithRealm"}
	case err == nil && root != nil:
		if verr := VerifyCallable(root); verr != nil {
			var nc *notCallable
			if errors.As(verr, &nc) {
				verr = &notCallable{where: "NewServer root", msg: nc.msg}
			}
			err = verr
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		root: root, opts: o, err: err, ctx: ctx, cancel: cancel, issuer: nextIssuer.Add(1), started: time.Now(),
		listeners: map[net.Listener]struct{}{},
		conns:     map[*Conn]struct{}{},
		named:     map[string]*Conn{},
		perHost:   map[string]int{},
	}
}

// Serve accepts connections on ln until Close, running each handshake in a
// goroutine of the server's. For TLS, give the server WithTLS or pass a TLS
// listener. A connection accepted while the server has as many handshakes
// in progress as WithHandshakeLimits allows, in all or from its host, is
// closed at once. Temporary accept errors (out of file descriptors or
// memory, a timeout) are logged at warn level and retried after a pause
// that doubles from 5 ms to 1 s, as net/http does. Each refused
// handshake (a wrong token, an untrusted certificate, another protocol
// version, a peer the realm gives no root) is logged at warn level
// (WithLogger), other failed handshakes at debug level. Serve returns
// ErrServerClosed after Close or Shutdown, with ln closed (also when they
// came before Serve), or the listener's other errors; invalid options are
// returned at once and ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.addListener(ln); err != nil {
		return err
	}
	defer s.removeListener(ln)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if backoff, err = s.acceptFailed(err, backoff); err != nil {
				return err
			}
			continue
		}
		backoff = 0
		if err := s.startHandshake(nc); err != nil {
			return err
		}
	}
}

// addListener records ln for Close, or closes it at once when the server
// cannot serve (invalid options, or closed already).
func (s *Server) addListener(ln net.Listener) error {
	if s.err != nil {
		ln.Close() // dialers get a refusal at once, not a handshake timeout
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining {
		ln.Close() // as Close would have: dialers are refused, not left to time out
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	return nil
}

// removeListener forgets ln once Serve returns.
func (s *Server) removeListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// acceptFailed decides what a failed Accept means: the server closed, a
// shortage that passes (it waits out a backoff, which it returns, and
// Serve goes on), or the listener's end.
func (s *Server) acceptFailed(err error, backoff time.Duration) (time.Duration, error) {
	if s.isClosed() {
		return 0, ErrServerClosed
	}
	if !temporaryAcceptError(err) {
		return 0, err
	}
	// Out of file descriptors and the like: connections wait
	// in the listen backlog until some are freed.
	backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
	s.opts.logger.Warn("tether: accept failed; retrying", "err", err, "retry-in", backoff)
	select {
	case <-time.After(backoff):
		return backoff, nil
	case <-s.ctx.Done():
		return 0, ErrServerClosed
	}
}

// startHandshake runs the handshake of an accepted connection in a
// goroutine of its own, within the handshake limits: over them, the
// connection is closed.
func (s *Server) startHandshake(nc net.Conn) error {
	host := hostOf(nc.RemoteAddr())
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	if s.handshakes >= s.opts.maxHandshakes || s.perHost[host] >= s.opts.maxHostHandshakes {
		total, fromHost := s.handshakes, s.perHost[host]
		s.mu.Unlock()
		// Closed rather than queued: a queue would hold what the
		// limits are there to bound.
		s.refused.Add(1)
		nc.Close()
		s.opts.logger.Debug("tether: too many handshakes in progress; connection closed",
			"remote", nc.RemoteAddr(), "handshakes", total, "from-host", fromHost)
		return nil
	}
	s.handshakes++
	s.perHost[host]++
	s.handshake.Add(1)
	s.mu.Unlock()
	go s.handshakeConn(nc, host)
	return nil
}

// handshakeConn serves an accepted connection, counting its handshake in
// progress until it is over, and logs a failed one.
func (s *Server) handshakeConn(nc net.Conn, host string) {
	defer s.handshake.Done()
	_, err := s.ServeConn(s.ctx, nc)
	s.mu.Lock()
	s.handshakes--
	if s.perHost[host]--; s.perHost[host] == 0 {
		delete(s.perHost, host)
	}
	s.mu.Unlock()
	switch {
	case err == nil:
	case isRefusal(err):
		// A refusal lasts until someone fixes a configuration (a
		// token, a certificate, a version): the operator hears of
		// each one. Its rate is bounded by the handshake limits,
		// and a remote.Client retries a refusal at its backoff's cap.
		s.opts.logger.Warn("tether: handshake refused", "remote", nc.RemoteAddr(), "err", err)
	default:
		s.opts.logger.Debug("tether: handshake failed", "remote", nc.RemoteAddr(), "err", err)
	}
}

// temporaryAcceptError reports whether Accept may succeed if tried again
// later: the process or system is out of file descriptors, buffers or
// memory, a connection was aborted before it was accepted, or a deadline
// passed.
func temporaryAcceptError(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// hostOf returns the host part of a peer's address, the unit of the
// per-host handshake limit: the IP address for TCP and UDP, otherwise the
// address as a string (one host for a Unix socket's peers, say).
func hostOf(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	case nil:
		return ""
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// ServeConn runs the accepting side of a connection over nc: the handshake
// (TLS first if nc is a *tls.Conn or the server has WithTLS), then the connection, which the server
// tracks and closes on Close. On error nc is closed.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) (*Conn, error) {
	if s.err != nil {
		nc.Close()
		return nil, s.err
	}
	if _, ok := nc.(*tls.Conn); !ok && s.opts.tlsConfig != nil {
		nc = tls.Server(nc, s.opts.tlsConfig)
	}
	c, err := serverHandshake(ctx, nc, s.opts, s.root)
	if err != nil {
		s.refused.Add(1)
		nc.Close()
		return nil, err
	}
	s.accepted.Add(1)
	s.mu.Lock()
	if s.closed || s.draining {
		draining := s.draining
		s.mu.Unlock()
		if draining {
			c.sayGoingAway() // the peer has its Welcome: tell it why it goes
		}
		c.sess.Close()
		return nil, ErrServerClosed
	}
	c.srv = s
	s.conns[c] = struct{}{}
	s.rememberName(c)
	s.live.Add(1)
	c.issuer = s.issuer // feed tokens issued on c are valid on every connection of s
	c.onDone = func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.forgetName(c)
		s.mu.Unlock()
		s.live.Done()
	}
	// Started before s.mu is let go: Close, which finds c in s.conns,
	// must not tear down a connection whose loops and keepalive are not
	// yet in place (start does not take s.mu).
	c.start()
	s.mu.Unlock()
	return c, nil
}

// isClosed reports whether Close or Shutdown was called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.draining
}

// Conns returns the server's live connections, one per connected peer.
func (s *Server) Conns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// Conn returns the live connection whose peer has the given ID
// (remoteable.Peer.ID), to call that peer back or find it again later.
func (s *Server) Conn(id string) (*Conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.peer.ID == id {
			return c, true
		}
	}
	return nil, false
}

// Close stops the listeners, closes every connection and waits until all of
// them are Done, their handlers included: calls running are cut (their
// callers get ErrConnectionLost). Shutdown drains instead. It must not be
// called from a handler (use a goroutine). It is idempotent, and cuts a
// Shutdown in progress short.
func (s *Server) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
		if c.answering.Load() > 0 {
			s.cut = true // a Shutdown in progress reports it
		}
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.Close()
	}
	s.handshake.Wait()
	s.live.Wait()
	if already {
		return nil
	}
	return errors.Join(errs...)
}
