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

// methodCall is what call and watch share: ADDR name.Method [args...]
// parsed, connected, and the arguments converted to JSON params.
type methodCall struct {
	cl     *remote.Client
	gw     *gateway.Gateway
	method string
	params json.RawMessage
}

// close closes the gateway, then the client.
func (mc *methodCall) close() {
	mc.gw.Close()
	mc.cl.Close()
}

// methodCommand registers the dial flags on fs (what is what -timeout
// bounds), parses args and connects; the caller closes the methodCall.
func methodCommand(ctx context.Context, fs *flag.FlagSet, what string, args []string) (*methodCall, error) {
	var df dialFlags
	df.register(fs, what)
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return nil, &exitError{code: exitUsage}
	}
	cl, gw, err := df.connect(ctx, fs.Arg(0), "tether-cli")
	if err != nil {
		return nil, err
	}
	mc := &methodCall{cl: cl, gw: gw, method: fs.Arg(1)}
	if mc.params, err = callParams(ctx, gw, mc.method, fs.Args()[2:]); err != nil {
		mc.close()
		return nil, err
	}
	return mc, nil
}

// callParams turns the command line's arguments into a JSON params array:
// each is JSON, except that an argument for a string parameter that is not
// a JSON string is taken as the text itself (tether call ADDR users.Get
// alice).
func callParams(ctx context.Context, gw *gateway.Gateway, method string, args []string) (json.RawMessage, error) {
	types := paramTypesOf(ctx, gw, method)
	params := make([]json.RawMessage, len(args))
	for i, a := range args {
		var err error
		if params[i], err = types.param(i, a); err != nil {
			return nil, err
		}
	}
	return json.Marshal(params)
}

// paramTypes are what the command knows of a method's parameters.
type paramTypes struct {
	described bool                      // the manager described itself
	md        *broker.MethodDescription // the method, when it is known and takes parameters
}

// paramTypesOf asks the manager of method (not a built-in) to describe
// itself; without an answer, every argument must be JSON.
func paramTypesOf(ctx context.Context, gw *gateway.Gateway, method string) paramTypes {
	i := strings.LastIndexByte(method, '.')
	if i <= 0 || strings.HasPrefix(method, "rpc.") {
		return paramTypes{}
	}
	d, err := gw.Describe(ctx, method[:i])
	if err != nil {
		return paramTypes{}
	}
	m, ok := d.Method(method[i+1:])
	if !ok || len(m.Params) == 0 {
		return paramTypes{described: true}
	}
	return paramTypes{described: true, md: &m}
}

// isString reports whether the i-th argument is for a string parameter.
func (pt paramTypes) isString(i int) bool {
	if pt.md == nil {
		return false
	}
	n := len(pt.md.Params)
	p := pt.md.Params[min(i, n-1)]
	if pt.md.Variadic && i >= n-1 && p.Elem != nil {
		p = *p.Elem
	}
	return p.Kind == broker.KindString
}

// param is the i-th argument, a, as JSON: a itself when it is JSON, or a
// as a JSON string when its parameter is a string (or nothing says what it
// is).
func (pt paramTypes) param(i int, a string) (json.RawMessage, error) {
	isString := pt.isString(i)
	switch {
	case isString && !strings.HasPrefix(strings.TrimSpace(a), `"`):
		return json.Marshal(a)
	case json.Valid([]byte(a)):
		return json.RawMessage(a), nil
	case pt.described && !isString:
		return nil, usageErr("argument %d is not JSON: %s", i+1, a)
	}
	return json.Marshal(a)
}

// cmdCall calls a method and prints its result as JSON.
func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("call", `Usage: tether call [flags] ADDR name.Method [args...]

Calls Method on the manager registered as name (or a built-in: rpc.managers,
rpc.describe) and prints the result as JSON. Each argument is JSON
('{"name":"carol"}', 42, true); for a string parameter plain text will do.
Copyables print as their fields plus "$type", references as typed handles,
models as a snapshot. An error prints its name and message and exits 1
(3 when the server is out of reach or too slow, 4 when it refuses the
credentials: see "tether help").`, stderr)
	compact := fs.Bool("compact", false, "print the result on one line")
	mc, err := methodCommand(ctx, fs, "the call", args)
	if err != nil {
		return err
	}
	defer mc.close()
	raw, err := mc.gw.Call(ctx, mc.method, mc.params)
	if err != nil {
		return callErr(err, stderr)
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
func cmdWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", `Usage: tether watch [flags] ADDR name.Method [args...]

Calls a method that returns a model (a Cacheable) and prints its snapshot,
then each change as it arrives, and "stale" / "live" when the link to the
model drops and comes back (the changes made meanwhile are printed once it
is back, none lost or repeated). Runs until interrupted; exits 0 then.`, stderr)
	asJSON := fs.Bool("json", false, "print one JSON event per line")
	mc, err := methodCommand(ctx, fs, "the first snapshot", args)
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
	return callErr(err, stderr)
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
