package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// startServer serves root on a loopback TCP port; the server closes at the
// end of the test.
func startServer(t testing.TB, root any, opts ...Option) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	return serveOn(t, ln, root, opts...), ln.Addr().String()
}

func serveOn(t testing.TB, ln net.Listener, root any, opts ...Option) *Server {
	srv := NewServer(root, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, srv.Close())
		require.ErrorIs(t, <-done, ErrServerClosed)
	})
	return srv
}

func dial(t testing.TB, addr string, opts ...Option) *Conn {
	t.Helper()
	c, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c
}

// transport connects a client to a server publishing root.
type transport struct {
	name    string
	connect func(t *testing.T, root any, srvOpts, cliOpts []Option) (*Conn, *Server)
}

var transports = []transport{
	{"tcp", func(t *testing.T, root any, srvOpts, cliOpts []Option) (*Conn, *Server) {
		srv, addr := startServer(t, root, srvOpts...)
		return dial(t, addr, cliOpts...), srv
	}},
	{"pipe", func(t *testing.T, root any, srvOpts, cliOpts []Option) (*Conn, *Server) {
		srv := NewServer(root, srvOpts...)
		a, b := net.Pipe()
		type res struct {
			c   *Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := srv.ServeConn(testkit.Ctx(t, 30*time.Second), a)
			ch <- res{c, err}
		}()
		c, err := NewConn(testkit.Ctx(t, 30*time.Second), b, cliOpts...)
		require.NoError(t, err)
		require.NoError(t, (<-ch).err)
		t.Cleanup(func() { c.Close(); <-c.Done(); srv.Close() })
		return c, srv
	}},
	{"tls", func(t *testing.T, root any, srvOpts, cliOpts []Option) (*Conn, *Server) {
		srvCfg, cliCfg := tlsConfigs(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		srv := serveOn(t, tls.NewListener(ln, srvCfg), root, srvOpts...)
		return dial(t, ln.Addr().String(), append(cliOpts, WithTLS(cliCfg))...), srv
	}},
}

// forEachTransport runs f over TCP, net.Pipe and TLS.
func forEachTransport(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			leakcheck.Check(t)
			f(t, tr)
		})
	}
}

var (
	tlsOnce        sync.Once
	tlsSrv, tlsCli *tls.Config
	errTLSSetup    error
)

// tlsConfigs returns a server config with a fresh self-signed certificate for
// 127.0.0.1 and a client config that trusts it and presents a client
// certificate (mutual TLS).
func tlsConfigs(t testing.TB) (*tls.Config, *tls.Config) {
	tlsOnce.Do(func() {
		ca, caKey, err := makeCert("tether test CA", nil, nil, true)
		if err != nil {
			errTLSSetup = err
			return
		}
		srvCert, srvKey, err := makeCert("127.0.0.1", ca, caKey, false)
		if err != nil {
			errTLSSetup = err
			return
		}
		cliCert, cliKey, err := makeCert("agent", ca, caKey, false)
		if err != nil {
			errTLSSetup = err
			return
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		tlsSrv = &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		}
		tlsCli = &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{cliCert.Raw}, PrivateKey: cliKey}},
			RootCAs:      pool,
		}
	})
	require.NoError(t, errTLSSetup)
	return tlsSrv, tlsCli
}

func makeCert(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:                  isCA,
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else if !isCA {
		tmpl.DNSNames = []string{cn}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// service is the object most tests publish.
type service struct {
	remoteable.Referenceable

	mu       sync.Mutex
	started  chan string    // names of handlers that started, when set
	release  chan struct{}  // blocks Block until closed
	sawDone  chan time.Time // when Wait's context was done
	lastPeer remoteable.Peer
	kept     any
}

func newService() *service {
	return &service{started: make(chan string, 100), release: make(chan struct{}), sawDone: make(chan time.Time, 10)}
}

func (s *service) Echo(b []byte) ([]byte, error)                           { return b, nil }
func (s *service) Concat(ctx context.Context, a, b string) (string, error) { return a + b, nil }
func (s *service) Add(x, y int) (int, error)                               { return x + y, nil }
func (s *service) Sum(xs ...int) (int, error) {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t, nil
}
func (s *service) Nothing() error        { return nil }
func (s *service) Fail(msg string) error { return errors.New(msg) }
func (s *service) Panic() error          { panic("boom") }
func (s *service) NotFound() error       { return errNotFoundWrapped }
func (s *service) Invalid(field string) error {
	return &validationError{Field: field, Reason: "must not be empty"}
}
func (s *service) Whoami(ctx context.Context) (string, error) {
	p, ok := remoteable.PeerFrom(ctx)
	if !ok {
		return "", errors.New("no peer")
	}
	s.mu.Lock()
	s.lastPeer = p
	s.mu.Unlock()
	return p.Name, nil
}

// Wait blocks until its context is done and records when.
func (s *service) Wait(ctx context.Context) error {
	s.started <- "Wait"
	<-ctx.Done()
	s.sawDone <- time.Now()
	return ctx.Err()
}

// Block blocks until the test releases it.
func (s *service) Block(ctx context.Context) (string, error) {
	s.started <- "Block"
	select {
	case <-s.release:
		return "released", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Expire returns a context error of its own making.
func (s *service) Expire(ctx context.Context) error {
	own, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	<-own.Done()
	return fmt.Errorf("gave up waiting: %w", own.Err())
}

func (s *service) Deadline(ctx context.Context) (time.Duration, error) {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, errors.New("no deadline")
	}
	return time.Until(dl), nil
}

// Keep stores whatever it is given; Kept gives it back.
func (s *service) Keep(v any) error {
	s.mu.Lock()
	s.kept = v
	s.mu.Unlock()
	return nil
}
func (s *service) Kept() (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kept, nil
}

// Callback calls cb.Notify(msg) over the same connection.
func (s *service) Callback(ctx context.Context, cb *Ref, msg string) (string, error) {
	var got string
	err := cb.Call(ctx, "Notify", &got, msg)
	return got, err
}

// NewCounter returns a fresh Referenceable on every call.
func (s *service) NewCounter() (*counter, error) { return &counter{}, nil }

// Same returns the same counter every time.
func (s *service) Same() (*counter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kept == nil {
		s.kept = &counter{}
	}
	return s.kept.(*counter), nil
}

// Identity returns the reference it was given.
func (s *service) Identity(r *Ref) (*Ref, error) { return r, nil }

// IsMine reports whether c is a counter of this process.
func (s *service) IsMine(c any) (bool, error) {
	_, ok := c.(*counter)
	return ok, nil
}

type counter struct {
	remoteable.Referenceable
	mu sync.Mutex
	n  int
}

func (c *counter) Inc() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n, nil
}

// listener is a client-side object the server calls back.
type listener struct {
	remoteable.Referenceable
	got chan string
}

func (l *listener) Notify(msg string) (string, error) {
	if l.got != nil {
		l.got <- msg
	}
	return "ack:" + msg, nil
}

var errNotFound = errors.New("not found")
var errNotFoundWrapped = errors.Join(errors.New("looking up alice"), errNotFound)

type validationError struct {
	Field  string
	Reason string
}

func (e *validationError) Error() string { return e.Field + ": " + e.Reason }

func init() {
	remoteable.RegisterError("test.not-found", errNotFound)
	remoteable.RegisterErrorType[*validationError]("test.validation")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// appendCallHead appends the head of a Call message, [3, id, target, method,
// timeout, [argc arguments follow]], as a peer would send it.
func appendCallHead(b []byte, id, target uint64, method string, timeout uint64, argc int) []byte {
	return appendCallHeadOf(b, 6, id, target, method, timeout, argc)
}

// appendCallHeadExt is appendCallHead for a call whose arguments are
// followed by an extension map.
func appendCallHeadExt(b []byte, id, target uint64, method string, timeout uint64, argc int) []byte {
	return appendCallHeadOf(b, 7, id, target, method, timeout, argc)
}

func appendCallHeadOf(b []byte, n int, id, target uint64, method string, timeout uint64, argc int) []byte {
	return appendCall(b, callHead{id: id, target: target, method: method, timeout: timeout, argc: argc, ext: n == 7})
}
