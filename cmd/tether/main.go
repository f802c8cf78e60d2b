package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0
	exitCallFailed  = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitRefused     = 4   // the server refused the command's credentials
	exitDraining    = 5   // health: the server is draining (shutting down)
	exitInterrupted = 130 // as shells report a command ended by SIGINT
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `tether talks to Tether servers.

Usage:
  tether serve    [flags]                         run a demo server (drains on SIGTERM)
  tether health   [flags] ADDR                    print a server's health; the exit code says it
  tether ls       [flags] ADDR [name]             list managers, or one manager's methods
  tether describe [flags] ADDR NAME               show a manager, a method (name.Method) or a type
  tether call     [flags] ADDR name.Method [args] call a method; args are JSON (or -d)
  tether watch    [flags] ADDR name.Method [args] follow a model a method returns
  tether gateway  -upstream ADDR [flags]          serve JSON-RPC 2.0 over HTTP
  tether ui       -upstream ADDR [flags]          a web inspector: the gateway with a page at /ui/
  tether gen      -type T,... [-o FILE] [DIR]     write typed stubs of interfaces
  tether version                                  print the module and protocol versions

"tether help COMMAND" or "tether COMMAND -h" shows a command's help and
flags. Flags may come before or after the other arguments; "--" ends them.
ADDR is host:port, or as tether serve prints it: tcp://host:port, or
tls://host:port (then give -tls or -cacert). The commands that connect log
to stderr (-log-level debug, info, warn or error; default info).

Exit codes: 0 success (watch, serve, gateway and ui: also when interrupted);
1 the call failed (the method returned an error, or there is no such
manager, method or type, or the arguments do not fit); 2 bad usage (what
is wrong, then the usage line); 3 a network failure (the server could not
be reached or did not answer in time, or the address to listen on is
taken); 4 authentication failed (a server refused -token or the
certificate, or the error is classed unauthenticated); 5 health: the
server is draining; 130 ls, describe, call or health interrupted. gen: 0
written, 1 an interface or method cannot have a stub, 2 bad usage.
`

// command is a subcommand: it parses its arguments (flags anywhere; see
// parse), runs, and returns nil or an error that says how to exit.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// run is the whole command, so that tests can run it in process; stdin
// is what -d @- reads.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	// The table is a map, one line per command, so that commands added on
	// other branches merge as one line each.
	cmds := map[string]command{
		"serve":    cmdServe,
		"health":   cmdHealth,
		"ls":       cmdLs,
		"describe": cmdDescribe,
		"call":     withStdin(cmdCall, stdin),
		"watch":    withStdin(cmdWatch, stdin),
		"gateway":  cmdGateway,
		"ui":       cmdUI,
		"gen":      cmdGen,
		"version":  cmdVersion,
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return help(ctx, cmds, args[1:], stdout, stderr)
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tether: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return exit(cmd(ctx, args[1:], stdout, stderr), args[0], cmd, stderr)
}

// withStdin is cmd, which reads stdin, as the command table holds it.
func withStdin(cmd func(context.Context, []string, io.Reader, io.Writer, io.Writer) error, stdin io.Reader) command {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmd(ctx, args, stdin, stdout, stderr)
	}
}

// help is "tether help [COMMAND]": the overview, or a command's help, on
// stdout ("tether help call" is "tether call -h").
func help(ctx context.Context, cmds map[string]command, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stdout, usage)
		return exitOK
	case len(args) > 1:
		fmt.Fprintf(stderr, "tether help: unexpected arguments %q\nUsage: tether help [COMMAND]\n", args[1:])
		return exitUsage
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tether help: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	cmd(ctx, []string{"-h"}, stdout, stdout)
	return exitOK
}

// exit prints what a command's error says, and a short usage after a
// usage error, and returns the exit code.
func exit(err error, name string, cmd command, stderr io.Writer) int {
	var ex *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ex):
		if ex.msg != "" {
			fmt.Fprintf(stderr, "tether %s: %s\n", name, ex.msg)
		}
		if ex.code == exitUsage {
			fmt.Fprint(stderr, shortUsage(cmd, name))
		}
		return ex.code
	}
	fmt.Fprintf(stderr, "tether %s: %v\n", name, err)
	return exitCallFailed
}

// shortUsage is the first line of a command's help (its "Usage: ..."
// line), taken from what "-h" prints so that it is written once, and
// where to find the rest.
func shortUsage(cmd command, name string) string {
	var help strings.Builder
	// -h only prints: every command parses its flags before anything else.
	cmd(context.Background(), []string{"-h"}, &help, &help)
	first, _, _ := strings.Cut(help.String(), "\n")
	return fmt.Sprintf("%s\nRun \"tether help %s\" for more.\n", first, name)
}

// exitError carries an exit code up to run.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageErr is a usage error (exit 2) saying what is wrong.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}
