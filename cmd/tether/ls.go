package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/types"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/registry"
)

// cmdLs lists the managers of a server, or one manager's methods.
func cmdLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ls", "Usage: tether ls [flags] ADDR [name]\n\nWithout a name, lists the managers the server at ADDR publishes, with their\nGo types. With a name, lists that manager's methods with their signatures.", stderr)
	df := dialFlags{oneShot: true}
	df.register(fs, "the server")
	asJSON := fs.Bool("json", false, "print the descriptions as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, 2, "ADDR"); err != nil {
		return err
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
	if errors.Is(err, registry.ErrNotFound) {
		return unknownManager(ctx, l.gw, name)
	}
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
	names, err := managerNames(ctx, l.gw)
	if err != nil {
		return nil, nil, callErr(err, l.stderr)
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

// managerNames are the names of the managers the server publishes, in
// the registry's order.
func managerNames(ctx context.Context, gw *gateway.Gateway) ([]string, error) {
	raw, err := gw.Call(ctx, "rpc.managers", nil)
	if err != nil {
		return nil, err
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, fmt.Errorf("rpc.managers: %w", err)
	}
	return names, nil
}

// printMethods writes one line per method: its signature, as a Go
// interface declares it, then, as a comment, what a caller should know
// (safe to repeat; the result is a reference, a Copyable or a model);
// then one line per exported method that cannot be called remotely, with
// the reason.
func printMethods(w io.Writer, name string, d broker.Description) {
	fmt.Fprintf(w, "%s (%s)\n", name, d.Type)
	names := paramNames(d)
	sigs := make([]string, len(d.Methods))
	width := 0
	for i, m := range d.Methods {
		sigs[i] = signature(m, names[m.Name])
		width = max(width, len(sigs[i]))
	}
	for i, m := range d.Methods {
		line := sigs[i]
		if notes := methodNotes(m); len(notes) > 0 {
			line = fmt.Sprintf("%-*s  // %s", width, line, strings.Join(notes, ", "))
		}
		fmt.Fprintf(w, "  %s\n", line)
	}
	for _, m := range d.Skipped {
		fmt.Fprintf(w, "  (not callable) %s: %s\n", m.Name, m.Reason)
	}
	printInterfaces(w, name, d)
}

// signature is a method as a Go interface declares it, less the context:
// Get(name string) (main.User, error). The parameters are named when
// names has one for each (see paramNames), else only typed.
func signature(m broker.MethodDescription, names []string) string {
	params := make([]string, len(m.Params))
	for i, p := range m.Params {
		t := p.Go
		if m.Variadic && i == len(m.Params)-1 && p.Elem != nil {
			t = "..." + p.Elem.Go
		}
		params[i] = t
		if len(names) == len(m.Params) {
			params[i] = names[i] + " " + t
		}
	}
	result := "error"
	if m.Result != nil {
		result = "(" + m.Result.Go + ", error)"
	}
	return fmt.Sprintf("%s(%s) %s", m.Name, strings.Join(params, ", "), result)
}

// paramNames are the parameters' names of each method, less the context,
// as the registered interfaces the manager implements declare them (the
// description itself has only their types).
func paramNames(d broker.Description) map[string][]string {
	names := map[string][]string{}
	for _, i := range d.Interfaces {
		for _, sig := range i.Methods {
			name, params, ok := strings.Cut(sig, "(")
			if !ok {
				continue
			}
			if ns := funcParamNames("func(" + params); ns != nil {
				names[strings.TrimSpace(name)] = ns
			}
		}
	}
	return names
}

// funcParamNames are the names of the parameters of the function type
// src, less a first context.Context; nil when src does not parse or a
// parameter has no name.
func funcParamNames(src string) []string {
	expr, err := parser.ParseExpr(src)
	if err != nil {
		return nil
	}
	ft, ok := expr.(*ast.FuncType)
	if !ok {
		return nil
	}
	var names []string
	for i, f := range ft.Params.List {
		if i == 0 && types.ExprString(f.Type) == "context.Context" && len(f.Names) <= 1 {
			continue
		}
		if len(f.Names) == 0 {
			return nil
		}
		for _, n := range f.Names {
			names = append(names, n.Name)
		}
	}
	return names
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
