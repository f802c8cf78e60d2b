package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/tether-go/tether/gateway"
)

// cmdGateway serves JSON-RPC 2.0 over HTTP in front of a server until
// interrupted.
func cmdGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gateway", `Usage: tether gateway -upstream ADDR [flags]

Serves JSON-RPC 2.0 over HTTP POST, calling the managers of the Tether
server at ADDR through a lasting connection (it rides out the server's
outages; requests made meanwhile get error -32001 at once). Try:

  curl -s -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}' \
    http://127.0.0.1:8080/
  curl -N 'http://127.0.0.1:8080/watch?method=gauges.Model'`, stderr)
	var df dialFlags
	df.register(fs, "each call")
	setDefault(fs, "timeout", gateway.DefaultTimeout.String()) // the gateway's own default, as documented
	var f gatewayFlags
	f.register(fs)
	fs.BoolVar(&f.ui, "ui", false, "also serve the web inspector at /ui/ (as tether ui does)")
	if err := f.parse(fs, args); err != nil {
		return err
	}
	// The access log and the upstream link's transitions go to stderr at
	// -log-level (info by default).
	logger := df.logger()
	cl, gw, err := df.connect(ctx, f.upstream, "tether-gateway", f.options(logger)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	defer logRefusals(cl, f.upstream, df.logger())()
	stopDebug, err := startDebug(f.debug, func() any { return cl.Stats() }, stdout)
	if err != nil {
		return err
	}
	defer stopDebug()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	// A batch runs at most 8 calls at a time, each within -timeout; the
	// write timeout leaves room for a full batch of slow calls.
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 13*df.timeout + time.Minute, IdleTimeout: 2 * time.Minute}
	// Shutdown waits for the requests in flight, and a /watch stream lasts
	// until its client goes: closing the gateway ends the streams (with an
	// "error" event) so that Shutdown does not wait for them.
	hs.RegisterOnShutdown(func() { gw.Close() })
	return serveHTTP(ctx, hs, ln, func() {
		fmt.Fprintf(stdout, "tether gateway on http://%s, calling %s\n", ln.Addr(), f.upstream)
		f.announceInspector(stdout, ln.Addr())
	})
}

// setDefault changes the default of the flag called name, and what -h
// says it is, to v.
func setDefault(fs *flag.FlagSet, name, v string) {
	f := fs.Lookup(name)
	f.Value.Set(v) //nolint:errcheck // v is a valid value of the flag
	f.DefValue = v
}

// gatewayFlags are the flags of tether gateway, besides the dial flags.
type gatewayFlags struct {
	upstream, addr, httpToken string
	maxBody                   int64
	debug                     string
	cors                      string
	ui                        bool // serve the web inspector too (tether gateway -ui, tether ui)
}

// options are the gateway's options the flags ask for, logging to logger.
func (f *gatewayFlags) options(logger *slog.Logger) []gateway.Option {
	opts := []gateway.Option{gateway.WithToken(f.httpToken), gateway.WithMaxBodySize(f.maxBody), gateway.WithLogger(logger)}
	if o := f.inspector(); o != nil {
		opts = append(opts, o)
	}
	if f.cors != "" {
		opts = append(opts, gateway.WithCORS(strings.Split(f.cors, ",")...))
	}
	return opts
}

// register defines the flags on fs.
func (f *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.upstream, "upstream", "", "the Tether server to call (required)")
	fs.StringVar(&f.addr, "listen", "127.0.0.1:8080", "the HTTP address to listen on")
	fs.StringVar(&f.httpToken, "http-token", os.Getenv("TETHER_HTTP_TOKEN"), "require \"Authorization: Bearer <token>\" from HTTP clients; default $TETHER_HTTP_TOKEN")
	fs.Int64Var(&f.maxBody, "max-body", 1<<20, "the largest request body accepted, in bytes")
	fs.StringVar(&f.debug, "debug", "", "serve expvar's /debug/vars on this address, with the upstream client's Stats as \"tether\"")
	fs.StringVar(&f.cors, "cors", "", "let web pages from these origins call the gateway from a browser (CORS): a comma-separated list of scheme://host[:port], or *")
}

// parse parses args and refuses a missing -upstream, arguments, and a
// -max-body that is not positive.
func (f *gatewayFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.upstream == "" {
		return usageErr("missing -upstream ADDR (the Tether server to call)")
	}
	if err := checkArgs(fs, 0); err != nil {
		return err
	}
	if f.maxBody <= 0 {
		return usageErr("-max-body must be positive")
	}
	return nil
}

// serveHTTP serves ln with hs until ctx ends (then shuts hs down, waiting
// up to 5 s for requests in flight) or serving fails; announce runs once
// hs serves.
func serveHTTP(ctx context.Context, hs *http.Server, ln net.Listener, announce func()) error {
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	announce()
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx) //nolint:errcheck // closing anyway
	<-served
	return nil
}
