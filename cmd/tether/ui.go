package main

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/tether-go/tether/gateway"
)

// uiSynopsis is tether ui's help.
const uiSynopsis = `Usage: tether ui -upstream ADDR [-listen addr] [flags]

Runs a gateway to the Tether server at ADDR with its web inspector, and
prints the inspector's address: open it in a browser to list the managers
and their methods, call them with JSON arguments, open the handles results
give out, watch models as live tables and see the state of the link to the
server. It is "tether gateway -ui": the JSON-RPC endpoint, /healthz and
/watch are served too. With -http-token the page asks for the token once
and keeps it in the browser tab.`

// cmdUI is tether ui: tether gateway -ui, with its own help.
func cmdUI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The flags are checked here first, so that mistakes and -h show the
	// help of ui rather than gateway's.
	fs := newFlags("ui", uiSynopsis, stderr)
	var df dialFlags
	df.register(fs, "each call")
	var f gatewayFlags
	f.register(fs)
	if err := f.parse(fs, args); err != nil {
		return err
	}
	return cmdGateway(ctx, append([]string{"-ui"}, args...), stdout, stderr)
}

// inspector is the gateway option -ui asks for, or nil (which
// gateway.New skips).
func (f *gatewayFlags) inspector() gateway.Option {
	if !f.ui {
		return nil
	}
	return gateway.WithInspector()
}

// announceInspector prints where the inspector is, when -ui is on.
func (f *gatewayFlags) announceInspector(w io.Writer, addr net.Addr) {
	if f.ui {
		fmt.Fprintf(w, "inspector on http://%s%s (open it in a browser)\n", addr, gateway.InspectorPath)
	}
}
