package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tether-go/tether/broker"
)

// cmdDescribe shows one manager, one method, or one type the managers'
// methods take or return, as grpcurl's describe does.
func cmdDescribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("describe", `Usage: tether describe [flags] ADDR NAME

Describes NAME on the server at ADDR: a manager (users: its methods, as ls
shows them), a method (users.Get: its signature, then the fields of the
structs and Copyables it takes and returns), or a type that a method takes
or returns, named as Go names it (main.User), by its Copyable name
(demo.User) or by its bare name (User): its kind and its fields, with the
names they have in JSON. An unknown name exits 1 with the names that come
close.`, stderr)
	df := dialFlags{oneShot: true}
	df.register(fs, "the server")
	asJSON := fs.Bool("json", false, "print the description as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, 2, "ADDR", "NAME"); err != nil {
		return err
	}
	cl, gw, err := df.connect(ctx, fs.Arg(0), "tether-cli")
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	l := lister{gw: gw, asJSON: *asJSON, stdout: stdout, stderr: stderr}
	return l.describe(ctx, fs.Arg(1))
}

// describe prints the manager, method or type called name.
func (l lister) describe(ctx context.Context, name string) error {
	names, descs, err := l.describeAll(ctx)
	if err != nil {
		return err
	}
	if d, ok := descs[name]; ok {
		if l.asJSON {
			return printJSON(l.stdout, d)
		}
		printMethods(l.stdout, name, d)
		return nil
	}
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		if d, ok := descs[name[:i]]; ok {
			return l.method(name[:i], name[i+1:], d)
		}
	}
	types := typesOf(names, descs)
	found := findTypes(types, name)
	if len(found) == 0 {
		return &exitError{code: exitCallFailed, msg: fmt.Sprintf("no manager, method or type %q%s", name, suggest(name, typeNames(names, types)))}
	}
	if l.asJSON {
		return printJSON(l.stdout, found)
	}
	for i, td := range found {
		if i > 0 {
			fmt.Fprintln(l.stdout)
		}
		printType(l.stdout, td)
	}
	return nil
}

// method prints the method called name of the manager mgr, described by
// d: its signature, then the types with fields it takes and returns.
func (l lister) method(mgr, name string, d broker.Description) error {
	md, ok := d.Method(name)
	if !ok {
		methods := make([]string, len(d.Methods))
		for i, m := range d.Methods {
			methods[i] = m.Name
		}
		return &exitError{code: exitCallFailed, msg: fmt.Sprintf("%s has no method %q%s", mgr, name, suggest(name, methods))}
	}
	if l.asJSON {
		return printJSON(l.stdout, md)
	}
	line := mgr + "." + signature(md, paramNames(d)[md.Name])
	if notes := methodNotes(md); len(notes) > 0 {
		line += "  // " + strings.Join(notes, ", ")
	}
	fmt.Fprintln(l.stdout, line)
	types := map[string]*broker.TypeDescription{}
	var order []string
	for i := range md.Params {
		collectTypes(&md.Params[i], types, &order)
	}
	if md.Result != nil {
		collectTypes(md.Result, types, &order)
	}
	for _, g := range order {
		if len(types[g].Fields) > 0 {
			fmt.Fprintln(l.stdout)
			printType(l.stdout, types[g])
		}
	}
	return nil
}

// typesOf indexes by Go name every type the managers' methods take or
// return, at any depth.
func typesOf(names []string, descs map[string]broker.Description) map[string]*broker.TypeDescription {
	types := map[string]*broker.TypeDescription{}
	var order []string
	for _, n := range names {
		d := descs[n]
		for i := range d.Methods {
			m := &d.Methods[i]
			for j := range m.Params {
				collectTypes(&m.Params[j], types, &order)
			}
			if m.Result != nil {
				collectTypes(m.Result, types, &order)
			}
		}
	}
	return types
}

// collectTypes adds td and the types inside it (elements, keys, fields)
// to types by Go name, and each new name to order.
func collectTypes(td *broker.TypeDescription, types map[string]*broker.TypeDescription, order *[]string) {
	if td == nil {
		return
	}
	if _, seen := types[td.Go]; seen {
		return
	}
	types[td.Go] = td
	*order = append(*order, td.Go)
	collectTypes(td.Elem, types, order)
	collectTypes(td.Key, types, order)
	for i := range td.Fields {
		collectTypes(&td.Fields[i].Type, types, order)
	}
}

// findTypes are the types called name: by Go name, with or without its
// pointer star, by Copyable name, or by the Go name less its package. A
// struct and the pointer to it have the same fields: the struct is kept.
func findTypes(types map[string]*broker.TypeDescription, name string) []*broker.TypeDescription {
	byName := map[string]*broker.TypeDescription{}
	for g, td := range types {
		plain := strings.TrimPrefix(g, "*")
		bare := plain
		if j := strings.LastIndexByte(plain, '.'); j >= 0 && !strings.ContainsAny(plain, "[]") {
			bare = plain[j+1:]
		}
		if g != name && plain != name && td.Name != name && bare != name {
			continue
		}
		if prev, ok := byName[plain]; !ok || strings.HasPrefix(prev.Go, "*") {
			byName[plain] = td
		}
	}
	found := make([]*broker.TypeDescription, 0, len(byName))
	for _, k := range sortedKeys(byName) {
		found = append(found, byName[k])
	}
	return found
}

// typeNames are the names describe knows, for suggestions: the managers,
// and the Go names of the types with fields, also less their package.
func typeNames(managers []string, types map[string]*broker.TypeDescription) []string {
	names := slices.Clone(managers)
	for _, g := range sortedKeys(types) {
		if len(types[g].Fields) == 0 {
			continue
		}
		names = append(names, g)
		if j := strings.LastIndexByte(g, '.'); j >= 0 && !strings.ContainsAny(g, "[]") {
			names = append(names, g[j+1:])
		}
	}
	slices.Sort(names[len(managers):])
	return append(names[:len(managers)], slices.Compact(names[len(managers):])...)
}

// sortedKeys are m's keys in order, so that output is the same every run.
func sortedKeys(m map[string]*broker.TypeDescription) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// printType writes td's Go name, its kind (and Copyable name), and one
// line per field: its name in JSON and its Go type.
func printType(w io.Writer, td *broker.TypeDescription) {
	kind := string(td.Kind)
	if td.Name != "" {
		kind += " " + td.Name
	}
	fmt.Fprintf(w, "%s: %s\n", td.Go, kind)
	width := 0
	for _, f := range td.Fields {
		width = max(width, len(f.Name))
	}
	for _, f := range td.Fields {
		fmt.Fprintf(w, "  %-*s  %s\n", width, f.Name, f.Type.Go)
	}
}
