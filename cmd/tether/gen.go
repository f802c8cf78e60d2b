package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// genSynopsis is what "tether gen -h" and "tether help gen" print.
const genSynopsis = `Usage: tether gen -type Name[,Name...] [-o FILE] [DIR]

Writes typed stubs for the named interfaces of the Go package in DIR
(default "."): for each interface, a type that implements it by calling a
remoteable.Caller (a *broker.Ref or a *remote.Ref), registered in init() so
that remoteable.As[Name](ref) returns it. FILE defaults to tether_gen.go in
DIR. Put it in the package as

	//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Users,Watcher

A method can have a stub when it is exported, takes a context.Context first
or not at all, returns error or (T, error), and its parameters and result
can cross the wire (no func, chan or unsafe.Pointer, nor structs holding
them). A result of interface type arrives as that interface's stub (or the
local object); a cache.View[K, V] result arrives as a *cache.Mirror[K, V].
Methods that cannot have a stub are all listed, and nothing is written.

The output is gofmt'ed and the same on every run; .ci/run regenerates every
such file and fails if one changed.

Exit codes: 0 written; 1 an interface or method cannot have a stub, or the
package does not type-check; 2 bad usage.`

// errUnreadable is why tether gen stops when it cannot read the package:
// go list failed, or the package does not type-check.
var errUnreadable = errors.New("cannot read the package")

// cmdGen is "tether gen": it writes the stubs of the interfaces -type names.
func cmdGen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gen", genSynopsis, stderr)
	typeList := fs.String("type", "", "comma-separated names of the interfaces to write stubs for (required)")
	out := fs.String("o", "", "the file to write (default tether_gen.go in DIR)")
	if err := parse(fs, args); err != nil {
		return err
	}
	names, err := genTypeNames(*typeList)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageErr("gen takes at most one directory, got %q", fs.Args())
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	if *out == "" {
		*out = filepath.Join(dir, "tether_gen.go")
	}
	src, err := genPackage(ctx, dir, *out, names)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, src, 0o666); err != nil {
		return fmt.Errorf("writing the stubs: %w", err)
	}
	return nil
}

// genTypeNames splits -type into interface names, refusing an empty list,
// a name that is not an identifier and a name given twice.
func genTypeNames(list string) ([]string, error) {
	if list == "" {
		return nil, usageErr("-type is required: the names of the interfaces to write stubs for")
	}
	seen := map[string]bool{}
	names := strings.Split(list, ",")
	for _, n := range names {
		if !token.IsIdentifier(n) {
			return nil, usageErr("-type: %q is not a Go identifier", n)
		}
		if seen[n] {
			return nil, usageErr("-type: %s is named twice", n)
		}
		seen[n] = true
	}
	return names, nil
}

// genPackage loads the package in dir (without the file out, which it
// replaces) and returns the stubs of the named interfaces, formatted.
func genPackage(ctx context.Context, dir, out string, names []string) ([]byte, error) {
	pkg, err := genLoad(ctx, dir, out)
	if err != nil {
		return nil, err
	}
	ifaces, refusals := genInterfaces(pkg, names)
	if len(refusals) > 0 {
		return nil, &exitError{code: exitCallFailed, msg: genRefusalMessage(refusals)}
	}
	return genWrite(pkg, "tether gen -type "+strings.Join(names, ","), ifaces)
}

// genRefusalMessage lists every refusal, one a line, in a stable order.
func genRefusalMessage(refusals []string) string {
	if len(refusals) == 1 {
		return "cannot write stubs: " + refusals[0]
	}
	return fmt.Sprintf("cannot write stubs (%d problems):\n\t%s", len(refusals), strings.Join(refusals, "\n\t"))
}

// listedPackage is what go list says about a package.
type listedPackage struct {
	Dir, ImportPath, Name, Export string
	GoFiles                       []string
	Error                         *struct{ Err string }
}

// goList runs "go list -json" with args in dir and decodes the packages it
// prints; go list knows the module, the build constraints and the build
// cache, which the standard library's go/build alone does not.
func goList(ctx context.Context, dir string, args ...string) ([]listedPackage, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"list", "-e", "-json=Dir,ImportPath,Name,Export,GoFiles,Error"}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: go list %s in %s: %w: %s", errUnreadable, strings.Join(args, " "), dir, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var pkgs []listedPackage
	for dec := json.NewDecoder(bytes.NewReader(stdout)); dec.More(); {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%w: reading go list's output: %w", errUnreadable, err)
		}
		if p.Error != nil {
			return nil, fmt.Errorf("%w: go list: %s", errUnreadable, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}

// genLoad parses the package in dir, leaving out the file out (a stale or
// broken copy of the stubs must not stop their regeneration), and
// type-checks it against the compiled export data of its imports.
func genLoad(ctx context.Context, dir, out string) (*types.Package, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, usageErr("%s is not a directory", dir)
	}
	listed, err := goList(ctx, dir, ".")
	if err != nil {
		return nil, err
	}
	lp := listed[0]
	fset := token.NewFileSet()
	files, err := genParse(fset, lp, out)
	if err != nil {
		return nil, err
	}
	exports, err := genExports(ctx, dir, files)
	if err != nil {
		return nil, err
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		if exports[path] == "" {
			return nil, fmt.Errorf("%w: go list gave no export data for %s", errUnreadable, path)
		}
		return os.Open(exports[path])
	})
	var typeErrs []string
	conf := types.Config{Importer: imp, Error: func(err error) { typeErrs = append(typeErrs, err.Error()) }}
	pkg, _ := conf.Check(lp.ImportPath, fset, files, nil)
	if len(typeErrs) > 0 {
		return nil, fmt.Errorf("%w: %s does not type-check:\n\t%s", errUnreadable, lp.ImportPath, strings.Join(typeErrs, "\n\t"))
	}
	return pkg, nil
}

// genHeader starts every file tether gen writes.
const genHeader = "// Code generated by \"tether gen "

// genParse parses the package's Go files but out and the files tether gen
// wrote (under any name): the stubs are made from the interfaces alone.
func genParse(fset *token.FileSet, lp listedPackage, out string) ([]*ast.File, error) {
	outAbs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	var files []*ast.File
	for _, name := range lp.GoFiles {
		path := filepath.Join(lp.Dir, name)
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if path == outAbs || bytes.HasPrefix(src, []byte(genHeader)) {
			continue
		}
		f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no Go files in %s besides %s", errUnreadable, lp.Dir, filepath.Base(out))
	}
	return files, nil
}

// genExports returns the export data file of every package the files
// import, directly or not, as "go list -export" builds them.
func genExports(ctx context.Context, dir string, files []*ast.File) (map[string]string, error) {
	seen := map[string]bool{}
	var paths []string
	for _, f := range files {
		for _, spec := range f.Imports {
			p, err := strconv.Unquote(spec.Path.Value)
			if err != nil || p == "unsafe" || p == "C" || seen[p] {
				continue
			}
			seen[p] = true
			paths = append(paths, p)
		}
	}
	exports := map[string]string{}
	if len(paths) == 0 {
		return exports, nil
	}
	sort.Strings(paths)
	listed, err := goList(ctx, dir, append([]string{"-export", "-deps"}, paths...)...)
	if err != nil {
		return nil, err
	}
	for _, p := range listed {
		exports[p.ImportPath] = p.Export
	}
	if len(exports) == 0 {
		return nil, fmt.Errorf("%w: go list -export listed no packages", errUnreadable)
	}
	return exports, nil
}
