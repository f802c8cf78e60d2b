package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/remote"
)

// newLogger is the command's logger: text lines on w (stderr) from level
// up.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// logLevelFlag defines -log-level on fs, into level (default info).
func logLevelFlag(fs *flag.FlagSet, level *slog.Level) {
	fs.TextVar(level, "log-level", slog.LevelInfo, "log to stderr from this `level` up: debug, info, warn or error")
}

// logRefusals logs each refusal by the server cl dials (a wrong -token, an
// untrusted certificate, another protocol version), at most one per
// backoff cap: calls fail meanwhile, and the operator must fix the
// command's flags. It returns the function that stops it.
func logRefusals(cl *remote.Client, addr string, logger *slog.Logger) (stop func()) {
	var (
		mu     sync.Mutex
		logged bool
	)
	log := func(err error) {
		mu.Lock()
		logged = true
		mu.Unlock()
		logger.Warn("tether: the server refused this client", "server", addr, "err", err)
	}
	stop = cl.Refused.Connect(log)
	// The client dials from the start: its first refusal may have come
	// before the signal was connected.
	if cl.State() == remote.Refused {
		mu.Lock()
		missed := !logged
		mu.Unlock()
		if err := cl.Err(); missed && err != nil {
			log(err)
		}
	}
	return stop
}

// dialFlags are the flags of every command that connects to a server; they
// match the library's options.
type dialFlags struct {
	timeout    time.Duration
	name       string
	token      string
	useTLS     bool
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	logLevel   slog.Level
	logOut     io.Writer // where the logs go: the flag set's output, stderr
	// oneShot commands (ls, describe, call) make one request and exit:
	// the client's routine lines (connecting, connected, closed) would
	// only clutter their output, so at -log-level info the client logs
	// from warn up; -log-level debug shows everything.
	oneShot bool
}

// register defines the flags on fs; what is what -timeout bounds.
func (d *dialFlags) register(fs *flag.FlagSet, what string) {
	fs.DurationVar(&d.timeout, "timeout", 10*time.Second, "give up on "+what+" after this long")
	fs.StringVar(&d.name, "name", "", "the name to announce (broker.WithName); default: none with -cert (the certificate names you), else tether-cli")
	fs.StringVar(&d.token, "token", os.Getenv("TETHER_TOKEN"), "the server's shared token, or yours for a server with per-peer tokens (broker.WithToken); default $TETHER_TOKEN")
	fs.BoolVar(&d.useTLS, "tls", false, "connect with TLS (implied by -cacert, -cert)")
	fs.StringVar(&d.caFile, "cacert", "", "PEM file of CA certificates to verify the server with (default: the system's)")
	fs.StringVar(&d.certFile, "cert", "", "PEM client certificate, for servers that require one (mutual TLS)")
	fs.StringVar(&d.keyFile, "key", "", "PEM key of -cert")
	fs.StringVar(&d.serverName, "servername", "", "the name to verify the server's certificate against (default: the host in ADDR)")
	logLevelFlag(fs, &d.logLevel)
	d.logOut = fs.Output()
}

// logger is the logger -log-level asks for, on stderr.
func (d *dialFlags) logger() *slog.Logger { return d.loggerAt(d.logLevel) }

// loggerAt is a logger on the command's log output from level up.
func (d *dialFlags) loggerAt(level slog.Level) *slog.Logger {
	if d.logOut == nil {
		return newLogger(os.Stderr, level) // dialFlags made without register
	}
	return newLogger(d.logOut, level)
}

// clientLogger is the logger the command's client gets: logger's, from
// warn up for a oneShot command unless -log-level asks for debug.
func (d *dialFlags) clientLogger() *slog.Logger {
	if !d.oneShot || d.logLevel <= slog.LevelDebug {
		return d.logger()
	}
	return d.loggerAt(max(d.logLevel, slog.LevelWarn))
}

// schemes are the schemes an ADDR may have, as tether serve prints it, and
// whether each means TLS.
var schemes = map[string]bool{"tcp": false, "tls": true}

// hostPort is addr as host:port, less a scheme (tcp://, tls://, as tether
// serve prints it). A tls:// address without TLS flags is refused: the
// server would not understand the command, and the flags say whom to
// trust.
func (d *dialFlags) hostPort(addr string) (string, error) {
	hp := addr
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		isTLS, known := schemes[scheme]
		switch {
		case !known:
			return "", usageErr("ADDR %q: unknown scheme %q (want tcp:// or tls://, or none)", addr, scheme)
		case isTLS && !d.useTLS && d.caFile == "" && d.certFile == "":
			return "", usageErr("ADDR %q: the server speaks TLS: add -tls, and -cacert FILE unless the system trusts its certificate", addr)
		}
		hp = rest
	}
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return "", usageErr("ADDR %q: want host:port (%v)", addr, err)
	}
	return hp, nil
}

// tlsConfig is the client's TLS configuration, nil when the flags ask for
// none.
func (d *dialFlags) tlsConfig() (*tls.Config, error) {
	if !d.useTLS && d.caFile == "" && d.certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.serverName}
	if d.caFile != "" {
		pool, err := certPool("-cacert", d.caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if d.certFile != "" || d.keyFile != "" {
		cert, err := keyPair(d.certFile, d.keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// certPool reads the PEM CA certificates in file, which the flag named
// flagName gave.
func certPool(flagName, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErr("%s: %v", flagName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usageErr("%s: no PEM certificates in %s", flagName, file)
	}
	return pool, nil
}

// keyPair reads -cert and -key.
func keyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, usageErr("-cert/-key: %v", err)
	}
	return cert, nil
}

// connect returns a lasting client to addr (see hostPort), logging as
// -log-level asks, introducing itself as -name,
// else as nobody with a client certificate, else as name, and
// a gateway over it (bounded by -timeout, then opts), which does the JSON
// conversion for every command.
func (d *dialFlags) connect(ctx context.Context, addr, name string, opts ...gateway.Option) (*remote.Client, *gateway.Gateway, error) {
	if d.timeout <= 0 {
		return nil, nil, usageErr("-timeout must be positive")
	}
	addr, err := d.hostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	bopts, err := d.brokerOptions(name)
	if err != nil {
		return nil, nil, err
	}
	cl, err := remote.Connect(ctx, "tcp", addr, remote.WithBroker(bopts...), remote.WithDialTimeout(d.timeout), remote.WithLogger(d.clientLogger()))
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	gw, err := gateway.New(cl, append([]gateway.Option{gateway.WithTimeout(d.timeout)}, opts...)...)
	if err != nil {
		cl.Close()
		return nil, nil, usageErr("%v", err)
	}
	return cl, gw, nil
}

// brokerOptions are the connection's options: the name it announces
// (-name, else none with a client certificate, else name), -token, and
// TLS as the flags ask.
func (d *dialFlags) brokerOptions(name string) ([]broker.Option, error) {
	cfg, err := d.tlsConfig()
	if err != nil {
		return nil, err
	}
	switch {
	case d.name != "":
		name = d.name
	case d.certFile != "":
		name = "" // the server knows us by our certificate
	}
	bopts := []broker.Option{broker.WithName(name), broker.WithToken(d.token)}
	if cfg != nil {
		bopts = append(bopts, broker.WithTLS(cfg))
	}
	return bopts, nil
}

// callErr turns a failed call into the command's exit, by the error's
// broker.Code: 130 when the command was interrupted, 3 when the server
// was out of reach or too slow, 4 when it refused the command's
// credentials, 1 otherwise.
func callErr(err error, stderr io.Writer) error {
	code := broker.CodeOf(err)
	var re *broker.RemoteError
	if code == broker.Canceled {
		if !errors.As(err, &re) {
			return &exitError{code: exitInterrupted, msg: "interrupted"}
		}
		// The server's own work was cancelled, not this command: the call
		// failed, and the server's message says why.
		code = broker.Unknown
	}
	var ge *gateway.Error
	if errors.As(err, &ge) && ge.Data != nil && ge.Data.Traceback != "" {
		fmt.Fprintf(stderr, "remote traceback:\n%s\n", ge.Data.Traceback)
	}
	return &exitError{code: exitCode(code), msg: "error: " + err.Error()}
}

// exitCodes are the command's exit statuses for the classes of error that
// have their own; every other failed call exits exitCallFailed.
var exitCodes = map[broker.Code]int{
	broker.OK:               exitOK,
	broker.Canceled:         exitInterrupted,
	broker.Unavailable:      exitUnreachable,
	broker.DeadlineExceeded: exitUnreachable,
	broker.Unauthenticated:  exitRefused,
}

// exitCode is the command's exit status for an error of class code.
func exitCode(code broker.Code) int {
	if c, ok := exitCodes[code]; ok {
		return c
	}
	return exitCallFailed
}
