package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
)

// cmdLs lists the managers of a server, or one manager's methods.
func cmdLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ls", "Usage: tether ls [flags] ADDR [name]\n\nWithout a name, lists the managers the server at ADDR publishes, with their\nGo types. With a name, lists that manager's methods with their signatures.", stderr)
	var df dialFlags
	df.register(fs, "the server")
	asJSON := fs.Bool("json", false, "print the descriptions as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	cl, gw, err := df.connect(ctx, fs.Arg(0), "tether-cli")
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	l := lister{gw: gw, asJSON: *asJSON, stdout: stdout, stderr: stderr}
	if fs.NArg() == 2 {
		return l.manager(ctx, fs.Arg(1))
	}
	return l.managers(ctx)
}

// lister prints what ls finds, as text or as JSON.
type lister struct {
	gw             *gateway.Gateway
	asJSON         bool
	stdout, stderr io.Writer
}

// manager prints the methods of the manager called name.
func (l lister) manager(ctx context.Context, name string) error {
	d, err := l.gw.Describe(ctx, name)
	if err != nil {
		return callErr(err, l.stderr)
	}
	if l.asJSON {
		return printJSON(l.stdout, d)
	}
	printMethods(l.stdout, name, d)
	return nil
}

// managers prints every manager with its Go type and how many methods it
// has.
func (l lister) managers(ctx context.Context) error {
	names, descs, err := l.describeAll(ctx)
	if err != nil {
		return err
	}
	if l.asJSON {
		return printJSON(l.stdout, descs)
	}
	tw := tabwriter.NewWriter(l.stdout, 0, 4, 2, ' ', 0)
	for _, n := range names {
		skipped := ""
		if k := len(descs[n].Skipped); k > 0 {
			skipped = fmt.Sprintf(", %d not callable", k)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d methods%s\n", n, descs[n].Type, len(descs[n].Methods), skipped)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range names {
		printInterfaces(l.stdout, n, descs[n])
	}
	return nil
}

// printInterfaces writes the registered interfaces a manager implements
// (remoteable.RegisterStub), each with its methods in Go syntax.
func printInterfaces(w io.Writer, name string, d broker.Description) {
	for _, i := range d.Interfaces {
		fmt.Fprintf(w, "%s implements %s:\n", name, i.Name)
		for _, m := range i.Methods {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
}

// describeAll returns the managers' names, in the registry's order, and
// their descriptions.
func (l lister) describeAll(ctx context.Context) ([]string, map[string]broker.Description, error) {
	raw, err := l.gw.Call(ctx, "rpc.managers", nil)
	if err != nil {
		return nil, nil, callErr(err, l.stderr)
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, nil, err
	}
	descs := map[string]broker.Description{}
	for _, n := range names {
		d, err := l.gw.Describe(ctx, n)
		if err != nil {
			return nil, nil, callErr(err, l.stderr)
		}
		descs[n] = d
	}
	return names, descs, nil
}

// printMethods writes one line per method: its signature, then what a
// caller should know (safe to repeat; the result is a reference, a
// Copyable or a model); then one line per exported method that cannot be
// called remotely, with the reason.
func printMethods(w io.Writer, name string, d broker.Description) {
	fmt.Fprintf(w, "%s (%s)\n", name, d.Type)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range d.Methods {
		fmt.Fprintf(tw, "  %s\t%s\n", signature(m), strings.Join(methodNotes(m), ", "))
	}
	tw.Flush()
	for _, m := range d.Skipped {
		fmt.Fprintf(w, "  (not callable) %s: %s\n", m.Name, m.Reason)
	}
	printInterfaces(w, name, d)
}

// signature is a method as Go declares it, less the context.
func signature(m broker.MethodDescription) string {
	params := make([]string, len(m.Params))
	for i, p := range m.Params {
		params[i] = p.Go
	}
	result := "error"
	if m.Result != nil {
		result = "(" + m.Result.Go + ", error)"
	}
	return fmt.Sprintf("%s(%s) %s", m.Name, strings.Join(params, ", "), result)
}

// methodNotes are what a caller of m should know: whether it is safe to
// repeat, and whether its result is a reference, a model or a Copyable.
func methodNotes(m broker.MethodDescription) []string {
	var notes []string
	if m.Idempotent {
		notes = append(notes, "idempotent")
	}
	if m.Result == nil {
		return notes
	}
	switch m.Result.Kind {
	case broker.KindReference, broker.KindCacheable:
		notes = append(notes, string(m.Result.Kind))
	case broker.KindCopyable:
		notes = append(notes, "copyable "+m.Result.Name)
	}
	return notes
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
