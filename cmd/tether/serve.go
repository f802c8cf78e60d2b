package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tether-go/tether/broker"
)

// cmdServe runs the demo server until interrupted.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", `Usage: tether serve [flags]

Runs a demo server until interrupted. Its registry holds "users" (a user
directory: Get, Names, Add, Remove, Login returning a session by reference,
Model returning a model of the users) and "gauges" (a model that changes
every tick).

On SIGTERM or SIGINT it drains (broker.Server.Shutdown): it stops
accepting, tells its clients it is going away (a remote.Client redials at
once), refuses new calls, lets the calls running finish for up to -grace,
then closes.`, stderr)
	var f serveFlags
	f.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := f.check(fs); err != nil {
		return err
	}
	ln, scheme, err := f.listen()
	if err != nil {
		return err
	}
	reg, drive := newDemo()
	logger := newLogger(stderr, f.logLevel)
	srv := broker.NewServer(reg, broker.WithName("tether-demo"), broker.WithToken(f.token), broker.WithTracebacks(f.tracebacks),
		broker.WithLogger(logger)) // each refused handshake, the drain, among others
	stopDebug, err := startDebug(f.debug, func() any { return srv.Stats() }, stdout)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDebug()
	banner := fmt.Sprintf("tether demo serving on %s://%s (managers: %s)\n", scheme, ln.Addr(), strings.Join(reg.Names(), ", "))
	announce := func() {
		fmt.Fprint(stdout, banner)
		logger.Info("tether serve: serving", "addr", fmt.Sprintf("%s://%s", scheme, ln.Addr()), "managers", strings.Join(reg.Names(), ","),
			"token", f.token != "", "client-certs", f.clientCA != "")
	}
	d := demoRun{srv: srv, ln: ln, grace: f.grace, drive: func(ctx context.Context) { drive(ctx, f.tick) },
		announce: announce, drain: func() { fmt.Fprintf(stdout, "tether demo draining (up to %v)\n", f.grace) }, stderr: stderr}
	return d.run(ctx)
}

// serveFlags are the flags of tether serve.
type serveFlags struct {
	addr, token                 string
	certFile, keyFile, clientCA string
	tracebacks                  bool
	tick, grace                 time.Duration
	debug                       string
	logLevel                    slog.Level
}

// register defines the flags on fs.
func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "listen", "127.0.0.1:7878", "the address to listen on")
	fs.StringVar(&f.token, "token", os.Getenv("TETHER_TOKEN"), "require this shared token from clients (broker.WithToken); default $TETHER_TOKEN")
	fs.StringVar(&f.certFile, "cert", "", "serve TLS with this PEM certificate")
	fs.StringVar(&f.keyFile, "key", "", "PEM key of -cert")
	fs.StringVar(&f.clientCA, "client-ca", "", "require client certificates signed by a CA in this PEM file (mutual TLS)")
	fs.BoolVar(&f.tracebacks, "tracebacks", false, "send handler tracebacks with errors (broker.WithTracebacks)")
	fs.DurationVar(&f.tick, "tick", time.Second, "how often the gauges change")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "on SIGTERM or SIGINT, how long calls running may take to finish before they are cut")
	fs.StringVar(&f.debug, "debug", "", "serve expvar's /debug/vars on this address, with the server's Stats as \"tether\"")
	logLevelFlag(fs, &f.logLevel)
}

// check refuses arguments and flags out of range.
func (f *serveFlags) check(fs *flag.FlagSet) error {
	switch {
	case f.tick <= 0:
		return usageErr("-tick must be positive")
	case f.grace < 0:
		return usageErr("-grace must not be negative")
	}
	return checkArgs(fs, 0)
}

// listen listens on -listen, with TLS when -cert and -key are given;
// scheme is "tls" then, else "tcp".
func (f *serveFlags) listen() (ln net.Listener, scheme string, err error) {
	ln, err = net.Listen("tcp", f.addr)
	if err != nil {
		return nil, "", &exitError{code: exitUnreachable, msg: err.Error()}
	}
	cfg, err := f.tlsConfig()
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	if cfg == nil {
		return ln, "tcp", nil
	}
	return tls.NewListener(ln, cfg), "tls", nil
}

// tlsConfig is the server's TLS configuration, requiring client
// certificates with -client-ca; nil without -cert and -key.
func (f *serveFlags) tlsConfig() (*tls.Config, error) {
	if f.certFile == "" && f.keyFile == "" {
		if f.clientCA != "" {
			return nil, usageErr("-client-ca needs -cert and -key")
		}
		return nil, nil
	}
	cert, err := keyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.clientCA != "" {
		if cfg.ClientCAs, err = certPool("-client-ca", f.clientCA); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// demoRun is what tether serve runs: srv serving ln, and drive, the loop
// that changes the demo's model.
type demoRun struct {
	srv      *broker.Server
	ln       net.Listener
	grace    time.Duration         // how long the drain may take
	drive    func(context.Context) // changes the model until its context ends
	announce func()                // runs once the server serves
	drain    func()                // runs when the drain begins
	stderr   io.Writer             // where a drain that cut calls is reported
}

// run serves and drives until ctx ends (a signal: the server then drains
// for up to d.grace) or serving fails. It stops both before it returns.
func (d demoRun) run(ctx context.Context) error {
	dctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	driven := make(chan struct{})
	go func() {
		defer close(driven)
		d.drive(dctx)
	}()
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(d.ln) }()
	d.announce()
	var serr error
	select {
	case <-ctx.Done():
		d.drain()
		// The model keeps changing while the calls running finish: a
		// mirror being served still sees it live.
		sctx, stop := context.WithTimeout(context.Background(), d.grace)
		if err := d.srv.Shutdown(sctx); err != nil {
			fmt.Fprintf(d.stderr, "tether serve: %v\n", err)
		}
		stop()
		serr = <-served
	case serr = <-served:
	}
	cancel()
	d.srv.Close()
	<-driven
	if !errors.Is(serr, broker.ErrServerClosed) {
		return serr
	}
	return nil
}

// cmdGateway serves JSON-RPC 2.0 over HTTP in front of a server until
