package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/remote"
)

// argsRule is how call and watch take arguments, in their help.
const argsRule = `Arguments are the method's parameters, each a JSON value converted as the
gateway converts JSON-RPC params (docs/guide.md §10): '{"name":"carol"}',
42, true, '"42"'. One shorthand for the shell: an argument that is not
valid JSON is taken as a string, so alice is "alice". A valid JSON value
is always that value: 42 is a number, refused for a string parameter
(quote it: '"42"'). Flags may come anywhere; after "--" everything is an
argument (-- -5). -d gives all the arguments at once as a JSON array:
-d '["alice"]', -d @FILE, or -d @- to read it from standard input;
arguments after the method are refused then.`

// methodCall is what call and watch share: ADDR name.Method [args...]
// parsed, connected, the method checked against its manager's description
// and the arguments converted to JSON params.
type methodCall struct {
	cl     *remote.Client
	gw     *gateway.Gateway
	method string
	md     *broker.MethodDescription // nil for a built-in (rpc.*)
	args   []string                  // the arguments on the command line, for hints
	params json.RawMessage
}

// close closes the gateway, then the client.
func (mc *methodCall) close() {
	mc.gw.Close()
	mc.cl.Close()
}

// methodCommand registers the dial flags and -d on fs (what is what
// -timeout bounds), parses args, connects and checks the method; the
// caller closes the methodCall. A oneShot command (call, not watch) keeps
// the client's routine link lines out of its output (dialFlags.oneShot).
func methodCommand(ctx context.Context, fs *flag.FlagSet, what string, oneShot bool, args []string, stdin io.Reader) (*methodCall, error) {
	df := dialFlags{oneShot: oneShot}
	df.register(fs, what)
	data := fs.String("d", "", "all the arguments as a `JSON` array; @FILE reads them from FILE, @- from standard input")
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if err := checkArgs(fs, -1, "ADDR", "name.Method"); err != nil {
		return nil, err
	}
	mc := &methodCall{method: fs.Arg(1), args: fs.Args()[2:]}
	params, err := readParams(ctx, *data, mc.args, stdin)
	if err != nil {
		return nil, err
	}
	if mc.cl, mc.gw, err = df.connect(ctx, fs.Arg(0), "tether-cli"); err != nil {
		return nil, err
	}
	if mc.md, err = checkMethod(ctx, mc.gw, mc.method); err != nil {
		mc.close()
		return nil, err
	}
	mc.params = params
	return mc, nil
}

// failed is the command's exit for the call's error err, with hints when
// the server refused the arguments.
func (mc *methodCall) failed(err error, stderr io.Writer) error {
	if broker.CodeOf(err) == broker.InvalidArgument && mc.md != nil {
		if hints := argHints(mc.md, mc.args); hints != "" {
			err = fmt.Errorf("%w\n%s", err, hints)
		}
	}
	return callErr(err, stderr)
}

// cmdCall calls a method and prints its result as JSON.
func cmdCall(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("call", `Usage: tether call [flags] ADDR name.Method [args...]

Calls Method on the manager registered as name (or a built-in: rpc.managers,
rpc.describe) and prints the result as JSON. The method is checked first:
an unknown one is refused with the names that come close (exit 1).

`+argsRule+`

Copyables print as their fields plus "$type", references as typed handles,
models as a snapshot. An error prints its name and message and exits 1
(3 when the server is out of reach or too slow, 4 when it refuses the
credentials: see "tether help").`, stderr)
	compact := fs.Bool("compact", false, "print the result on one line")
	mc, err := methodCommand(ctx, fs, "the call", true, args, stdin)
	if err != nil {
		return err
	}
	defer mc.close()
	raw, err := mc.gw.Call(ctx, mc.method, mc.params)
	if err != nil {
		return mc.failed(err, stderr)
	}
	if strings.Contains(string(raw), `"$ref":"ref-`) {
		fmt.Fprintln(stderr, "tether call: the handles shown are released when tether exits; use the gateway to keep them")
	}
	if *compact {
		_, err = fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return printJSON(stdout, v)
}

// cmdWatch follows a model a method returns and prints its events.
func cmdWatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("watch", `Usage: tether watch [flags] ADDR name.Method [args...]

Calls a method that returns a model (a Cacheable) and prints its snapshot,
then each change as it arrives, and "stale" / "live" when the link to the
model drops and comes back (the changes made meanwhile are printed once it
is back, none lost or repeated). Runs until interrupted; exits 0 then.

`+argsRule, stderr)
	asJSON := fs.Bool("json", false, "print one JSON event per line")
	mc, err := methodCommand(ctx, fs, "the first snapshot", false, args, stdin)
	if err != nil && ctx.Err() != nil {
		return nil // interrupted while checking the method: the normal end
	}
	if err != nil {
		return err
	}
	defer mc.close()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var werr error
	err = mc.gw.Watch(wctx, mc.method, mc.params, func(ev gateway.Event) {
		if werr != nil {
			return
		}
		if werr = printEvent(stdout, ev, *asJSON); werr != nil {
			stop() // nobody reads what we print: stop watching
		}
	})
	if werr != nil {
		return werr
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end, even before the first snapshot
	}
	return mc.failed(err, stderr)
}

// printEvent writes ev as a line of JSON, or as a person reads it.
func printEvent(w io.Writer, ev gateway.Event, asJSON bool) error {
	if asJSON {
		b, _ := json.Marshal(ev)
		_, err := fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := io.WriteString(w, formatEvent(ev))
	return err
}

// formatEvent is an event as a person reads it.
func formatEvent(ev gateway.Event) string {
	switch ev.Kind {
	case "snapshot":
		var b strings.Builder
		fmt.Fprintf(&b, "snapshot v%d (%d entries)\n", ev.Version, len(ev.Entries))
		for _, e := range ev.Entries {
			fmt.Fprintf(&b, "  %s = %s\n", e.Key, e.Value)
		}
		return b.String()
	case "set":
		return fmt.Sprintf("v%d set %s = %s\n", ev.Version, ev.Key, ev.Value)
	case "delete":
		return fmt.Sprintf("v%d delete %s\n", ev.Version, ev.Key)
	case "stale":
		return fmt.Sprintf("stale: the link to the model is down (at v%d)\n", ev.Version)
	case "reset":
		return fmt.Sprintf("reset: the model is a new one (epoch %s, v%d); the differences follow\n", ev.Epoch, ev.Version)
	case "live":
		return fmt.Sprintf("live: in sync again at v%d\n", ev.Version)
	}
	return fmt.Sprintf("%s\n", ev.Kind)
}
