package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tether-go/tether/broker"
)

// cmdHealth asks a server how it is (broker.Health) and exits by its
// status: exitOK serving, exitDraining draining.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("health", `Usage: tether health [flags] ADDR

Asks the Tether server at ADDR how it is, with the health call every server
answers, and prints its status ("serving" or "draining"), its name, uptime
and connections. A relay answers for itself. For scripts and probes, the
exit code says it all: 0 serving; 5 draining (it is shutting down: take it
out of rotation); 3 unreachable, or no answer within -timeout (a draining
server has closed its listeners, so a probe that comes after the drain
began usually gets 3: 5 is for one that was connected before); 4 the
server refused -token or the certificate; 1 the server answered with an
error (a server too old to know the health call); 2 bad usage.`, stderr)
	var df dialFlags
	df.register(fs, "the server")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, 1, "ADDR"); err != nil {
		return err
	}
	conn, err := df.dialOnce(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	defer func() { conn.Close(); <-conn.Done() }()
	return printHealth(ctx, conn, df.timeout, stdout, *asJSON)
}

// printHealth asks the server at the far end of conn for its health,
// within timeout, prints it, and returns the command's exit for it:
// nil serving, exitDraining draining.
func printHealth(ctx context.Context, conn *broker.Conn, timeout time.Duration, stdout io.Writer, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := broker.Health(ctx, conn)
	if err != nil {
		return callErr(err, io.Discard)
	}
	if asJSON {
		err = printJSON(stdout, h)
	} else {
		_, err = fmt.Fprintf(stdout, "%s\tname=%q uptime=%v conns=%d\n", h.Status, h.Name, h.Uptime.Round(time.Millisecond), h.Conns)
	}
	if err != nil {
		return err
	}
	if h.Status != broker.StatusServing {
		return &exitError{code: exitDraining, msg: "the server is " + h.Status}
	}
	return nil
}

// dialOnce dials addr (see hostPort) once (no redialling: a probe wants
// the answer now), bounded by -timeout, logging as -log-level asks.
func (d *dialFlags) dialOnce(ctx context.Context, addr string) (*broker.Conn, error) {
	if d.timeout <= 0 {
		return nil, usageErr("-timeout must be positive")
	}
	addr, err := d.hostPort(addr)
	if err != nil {
		return nil, err
	}
	bopts, err := d.brokerOptions("tether-cli")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	conn, err := broker.Dial(ctx, "tcp", addr, append(bopts, broker.WithLogger(d.logger()))...)
	if err != nil {
		return nil, dialErr(ctx, err)
	}
	return conn, nil
}

// dialErr is the command's exit for a failed dial: refused (4) when the
// server refused the credentials, interrupted (130), else unreachable (3).
func dialErr(ctx context.Context, err error) error {
	switch code := broker.CodeOf(err); {
	case code == broker.Unauthenticated:
		return &exitError{code: exitRefused, msg: "error: " + err.Error()}
	case code == broker.Canceled && ctx.Err() == context.Canceled:
		return &exitError{code: exitInterrupted, msg: "interrupted"}
	}
	return &exitError{code: exitUnreachable, msg: "error: " + err.Error()}
}
