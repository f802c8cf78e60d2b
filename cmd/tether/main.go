package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `tether talks to Tether servers.

Usage:
  tether serve   [-listen addr] [flags]          run a demo server (drains on SIGTERM)
  tether health  [flags] ADDR                    print a server's health; the exit code says it
  tether ls      [flags] ADDR [name]             list managers, or one manager's methods
  tether call    [flags] ADDR name.Method [args] call a method; args are JSON
  tether watch   [flags] ADDR name.Method [args] follow a model a method returns
  tether gateway -upstream ADDR [-listen addr]   serve JSON-RPC 2.0 over HTTP
  tether ui      -upstream ADDR [-listen addr]   a web inspector: the gateway with a page at /ui/
  tether gen     -type T,... [-o FILE] [DIR]     write typed stubs of interfaces

"tether COMMAND -h" or "tether help COMMAND" shows a command's flags.

Exit codes: 0 success (watch, serve, gateway and ui: also when interrupted);
1 the call failed (the method returned an error, or there is no such
manager or method, or the arguments do not fit); 2 bad usage; 3 a network
failure (the server could not be reached or did not answer in time, or the
address to listen on is taken); 4 authentication failed (a server refused
-token or the certificate, or the error is classed unauthenticated); 5
health: the server is draining; 130 ls, call or health interrupted. gen:
0 written, 1 an interface or method cannot have a stub, 2 bad usage.
`

// run is the whole command, so that tests can run it in process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"serve":   cmdServe,
		"health":  cmdHealth,
		"ls":      cmdLs,
		"call":    cmdCall,
		"watch":   cmdWatch,
		"gateway": cmdGateway,
		"ui":      cmdUI,
		"gen":     cmdGen,
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) == 2 && cmds[args[1]] != nil {
			// "tether help gen" is "tether gen -h", on stdout.
			cmds[args[1]](ctx, []string{"-h"}, stdout, stdout)
			return exitOK
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tether: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	var ex *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ex):
		if ex.msg != "" {
			fmt.Fprintf(stderr, "tether %s: %s\n", args[0], ex.msg)
		}
		return ex.code
	}
	fmt.Fprintf(stderr, "tether %s: %v\n", args[0], err)
	return exitCallFailed
}

// exitError carries an exit code up to run.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}
