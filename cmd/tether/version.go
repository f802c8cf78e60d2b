package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/tether-go/tether/broker"
)

// cmdVersion prints the command's module version and the protocol version
// it speaks.
func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", `Usage: tether version

Prints the version of the tether module this command was built from
("(devel)" when built from a checkout), the version of the wire protocol
it speaks (a server speaking another refuses it), and the Go version.`, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkArgs(fs, 0); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "tether %s\nprotocol %d\n%s\n", moduleVersion(), broker.ProtocolVersion, runtime.Version())
	return err
}

// moduleVersion is the version of the module the running binary was built
// from: a tag for "go install ...@v1.2.3", "(devel)" from a checkout.
func moduleVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok || info.Main.Version == "" {
		return "(devel)"
	}
	return info.Main.Version
}
