package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// newFlags returns a flag set whose -h prints synopsis, then the flags.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, taking flags before, between and after the
// positional arguments (up to "--", after which everything is
// positional), so that fs.Args() are the positional arguments. -h prints
// the command's help and is success; other mistakes are usage errors that
// say what is wrong.
func parse(fs *flag.FlagSet, args []string) error {
	flags, positional := splitFlags(fs, args)
	// The flag package prints its complaint and the whole help on a
	// mistake; run prints the complaint and a short usage instead.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(append(append(flags, "--"), positional...))
	fs.Usage = usage
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return &exitError{code: exitOK}
	case err != nil:
		return usageErr("%v", err)
	}
	return nil
}

// splitFlags separates args into flags (each with its value, when the flag
// takes one as the next argument) and positional arguments. A "--" ends
// the flags; an argument that starts with "-" and is not a flag the set
// knows stays with the flags, for fs.Parse to refuse by name.
func splitFlags(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(positional, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(a[1:], "-")
		if strings.Contains(name, "=") || isBoolFlag(fs.Lookup(name)) || i+1 == len(args) {
			continue
		}
		i++
		flags = append(flags, args[i])
	}
	return flags, positional
}

// isBoolFlag reports whether f takes no value (-json rather than
// -json=true); an unknown flag (nil) counts as one, so that the argument
// after it is not swallowed.
func isBoolFlag(f *flag.Flag) bool {
	if f == nil {
		return true
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// checkArgs refuses too few positional arguments, naming the first one
// missing (names lists the required ones in order), and more than max
// (max < 0: any number).
func checkArgs(fs *flag.FlagSet, max int, names ...string) error {
	if n := fs.NArg(); n < len(names) {
		return usageErr("missing %s", names[n])
	}
	if max >= 0 && fs.NArg() > max {
		return usageErr("unexpected arguments %q", fs.Args()[max:])
	}
	return nil
}
