package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/remote"
)

// warnLogger logs warnings and errors to w: what an operator must act on,
// such as refused handshakes.
func warnLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// logRefusals logs each refusal by the server cl dials (a wrong -token, an
// untrusted certificate, another protocol version), at most one per
// backoff cap: calls fail meanwhile, and the operator must fix the
// command's flags. It returns the function that stops it.
func logRefusals(cl *remote.Client, addr string, logger *slog.Logger) (stop func()) {
	var (
		mu     sync.Mutex
		logged bool
	)
	log := func(err error) {
		mu.Lock()
		logged = true
		mu.Unlock()
		logger.Warn("tether: the server refused this client", "server", addr, "err", err)
	}
	stop = cl.Refused.Connect(log)
	// The client dials from the start: its first refusal may have come
	// before the signal was connected.
	if cl.State() == remote.Refused {
		mu.Lock()
		missed := !logged
		mu.Unlock()
		if err := cl.Err(); missed && err != nil {
			log(err)
		}
	}
	return stop
}

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

// parse parses args; -h is success, other mistakes are usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: exitOK}
		}
		return &exitError{code: exitUsage}
	}
	return nil
}

// dialFlags are the flags of every command that connects to a server; they
// match the library's options.
type dialFlags struct {
	timeout    time.Duration
	name       string
	token      string
	useTLS     bool
	caFile     string
	certFile   string
	keyFile    string
	serverName string
}

func (d *dialFlags) register(fs *flag.FlagSet, what string) {
	fs.DurationVar(&d.timeout, "timeout", 10*time.Second, "give up on "+what+" after this long")
	fs.StringVar(&d.name, "name", "", "the name to announce (broker.WithName); default: none with -cert (the certificate names you), else tether-cli")
	fs.StringVar(&d.token, "token", os.Getenv("TETHER_TOKEN"), "the server's shared token, or yours for a server with per-peer tokens (broker.WithToken); default $TETHER_TOKEN")
	fs.BoolVar(&d.useTLS, "tls", false, "connect with TLS (implied by -cacert, -cert)")
	fs.StringVar(&d.caFile, "cacert", "", "PEM file of CA certificates to verify the server with (default: the system's)")
	fs.StringVar(&d.certFile, "cert", "", "PEM client certificate, for servers that require one (mutual TLS)")
	fs.StringVar(&d.keyFile, "key", "", "PEM key of -cert")
	fs.StringVar(&d.serverName, "servername", "", "the name to verify the server's certificate against (default: the host in ADDR)")
}

func (d *dialFlags) tlsConfig() (*tls.Config, error) {
	if !d.useTLS && d.caFile == "" && d.certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.serverName}
	if d.caFile != "" {
		pem, err := os.ReadFile(d.caFile)
		if err != nil {
			return nil, usageErr("-cacert: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageErr("-cacert: no PEM certificates in %s", d.caFile)
		}
	}
	if d.certFile != "" || d.keyFile != "" {
		cert, err := tls.LoadX509KeyPair(d.certFile, d.keyFile)
		if err != nil {
			return nil, usageErr("-cert/-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// connect returns a lasting client to addr, introducing itself as -name,
// else as nobody with a client certificate, else as name, and
// a gateway over it (bounded by -timeout, then opts), which does the JSON
// conversion for every command.
func (d *dialFlags) connect(ctx context.Context, addr, name string, opts ...gateway.Option) (*remote.Client, *gateway.Gateway, error) {
	if d.timeout <= 0 {
		return nil, nil, usageErr("-timeout must be positive")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, nil, usageErr("ADDR %q: want host:port (%v)", addr, err)
	}
	cfg, err := d.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	switch {
	case d.name != "":
		name = d.name
	case d.certFile != "":
		name = "" // the server knows us by our certificate
	}
	bopts := []broker.Option{broker.WithName(name), broker.WithToken(d.token)}
	if cfg != nil {
		bopts = append(bopts, broker.WithTLS(cfg))
	}
	cl, err := remote.Connect(ctx, "tcp", addr, remote.WithBroker(bopts...), remote.WithDialTimeout(d.timeout))
	if err != nil {
		return nil, nil, usageErr("%v", err)
	}
	gw, err := gateway.New(cl, append([]gateway.Option{gateway.WithTimeout(d.timeout)}, opts...)...)
	if err != nil {
		cl.Close()
		return nil, nil, usageErr("%v", err)
	}
	return cl, gw, nil
}

// methodCommand is what call and watch share: ADDR name.Method [args...]
// parsed, connected, and the arguments converted to JSON params. The
// caller closes gw, then cl.
func methodCommand(ctx context.Context, fs *flag.FlagSet, df *dialFlags, args []string) (cl *remote.Client, gw *gateway.Gateway, method string, params json.RawMessage, err error) {
	if err = parse(fs, args); err != nil {
		return nil, nil, "", nil, err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return nil, nil, "", nil, &exitError{code: exitUsage}
	}
	if cl, gw, err = df.connect(ctx, fs.Arg(0), "tether-cli"); err != nil {
		return nil, nil, "", nil, err
	}
	method = fs.Arg(1)
	if params, err = callParams(ctx, gw, method, fs.Args()[2:]); err != nil {
		gw.Close()
		cl.Close()
		return nil, nil, "", nil, err
	}
	return cl, gw, method, params, nil
}

// callErr turns a failed call into the command's exit, by the error's
// broker.Code: 130 when the command was interrupted, 3 when the server
// was out of reach or too slow, 4 when it refused the command's
// credentials, 1 otherwise.
func callErr(err error, stderr io.Writer) error {
	code := broker.CodeOf(err)
	var re *broker.RemoteError
	if code == broker.Canceled {
		if !errors.As(err, &re) {
			return &exitError{code: exitInterrupted, msg: "interrupted"}
		}
		// The server's own work was cancelled, not this command: the call
		// failed, and the server's message says why.
		code = broker.Unknown
	}
	var ge *gateway.Error
	if errors.As(err, &ge) && ge.Data != nil && ge.Data.Traceback != "" {
		fmt.Fprintf(stderr, "remote traceback:\n%s\n", ge.Data.Traceback)
	}
	return &exitError{code: exitCode(code), msg: "error: " + err.Error()}
}

// exitCode is the command's exit status for an error of class code.
func exitCode(code broker.Code) int {
	switch code {
	case broker.OK:
		return exitOK
	case broker.Canceled:
		return exitInterrupted
	case broker.Unavailable, broker.DeadlineExceeded:
		return exitUnreachable
	case broker.Unauthenticated:
		return exitRefused
	}
	return exitCallFailed
}

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
	if fs.NArg() == 2 {
		d, err := gw.Describe(ctx, fs.Arg(1))
		if err != nil {
			return callErr(err, stderr)
		}
		if *asJSON {
			return printJSON(stdout, d)
		}
		printMethods(stdout, fs.Arg(1), d)
		return nil
	}
	raw, err := gw.Call(ctx, "rpc.managers", nil)
	if err != nil {
		return callErr(err, stderr)
	}
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return err
	}
	descs := map[string]broker.Description{}
	for _, n := range names {
		d, err := gw.Describe(ctx, n)
		if err != nil {
			return callErr(err, stderr)
		}
		descs[n] = d
	}
	if *asJSON {
		return printJSON(stdout, descs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, n := range names {
		skipped := ""
		if k := len(descs[n].Skipped); k > 0 {
			skipped = fmt.Sprintf(", %d not callable", k)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d methods%s\n", n, descs[n].Type, len(descs[n].Methods), skipped)
	}
	return tw.Flush()
}

// printMethods writes one line per method: its signature, then what a
// caller should know (safe to repeat; the result is a reference, a
// Copyable or a model); then one line per exported method that cannot be
// called remotely, with the reason.
func printMethods(w io.Writer, name string, d broker.Description) {
	fmt.Fprintf(w, "%s (%s)\n", name, d.Type)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, m := range d.Methods {
		params := make([]string, len(m.Params))
		for i, p := range m.Params {
			params[i] = p.Go
		}
		result := "error"
		if m.Result != nil {
			result = "(" + m.Result.Go + ", error)"
		}
		var notes []string
		if m.Idempotent {
			notes = append(notes, "idempotent")
		}
		if m.Result != nil {
			switch m.Result.Kind {
			case broker.KindReference, broker.KindCacheable:
				notes = append(notes, string(m.Result.Kind))
			case broker.KindCopyable:
				notes = append(notes, "copyable "+m.Result.Name)
			}
		}
		fmt.Fprintf(tw, "  %s(%s) %s\t%s\n", m.Name, strings.Join(params, ", "), result, strings.Join(notes, ", "))
	}
	tw.Flush()
	for _, m := range d.Skipped {
		fmt.Fprintf(w, "  (not callable) %s: %s\n", m.Name, m.Reason)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// callParams turns the command line's arguments into a JSON params array:
// each is JSON, except that an argument for a string parameter that is not
// a JSON string is taken as the text itself (tether call ADDR users.Get
// alice).
func callParams(ctx context.Context, gw *gateway.Gateway, method string, args []string) (json.RawMessage, error) {
	var d *broker.Description
	if i := strings.LastIndexByte(method, '.'); i > 0 && !strings.HasPrefix(method, "rpc.") {
		if desc, err := gw.Describe(ctx, method[:i]); err == nil {
			d = &desc
		}
	}
	params := make([]json.RawMessage, len(args))
	for i, a := range args {
		isString := false
		if d != nil {
			if m, ok := d.Method(method[strings.LastIndexByte(method, '.')+1:]); ok && len(m.Params) > 0 {
				p := m.Params[min(i, len(m.Params)-1)]
				if m.Variadic && i >= len(m.Params)-1 && p.Elem != nil {
					p = *p.Elem
				}
				isString = p.Kind == broker.KindString
			}
		}
		switch {
		case isString && !strings.HasPrefix(strings.TrimSpace(a), `"`):
			params[i], _ = json.Marshal(a)
		case json.Valid([]byte(a)):
			params[i] = json.RawMessage(a)
		default:
			if d != nil && !isString {
				return nil, usageErr("argument %d is not JSON: %s", i+1, a)
			}
			params[i], _ = json.Marshal(a)
		}
	}
	return json.Marshal(params)
}

func cmdCall(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("call", `Usage: tether call [flags] ADDR name.Method [args...]

Calls Method on the manager registered as name (or a built-in: rpc.managers,
rpc.describe) and prints the result as JSON. Each argument is JSON
('{"name":"carol"}', 42, true); for a string parameter plain text will do.
Copyables print as their fields plus "$type", references as typed handles,
models as a snapshot. An error prints its name and message and exits 1
(3 when the server is out of reach or too slow, 4 when it refuses the
credentials: see "tether help").`, stderr)
	var df dialFlags
	df.register(fs, "the call")
	compact := fs.Bool("compact", false, "print the result on one line")
	cl, gw, method, params, err := methodCommand(ctx, fs, &df, args)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	raw, err := gw.Call(ctx, method, params)
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

func cmdWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("watch", `Usage: tether watch [flags] ADDR name.Method [args...]

Calls a method that returns a model (a Cacheable) and prints its snapshot,
then each change as it arrives, and "stale" / "live" when the link to the
model drops and comes back (the changes made meanwhile are printed once it
is back, none lost or repeated). Runs until interrupted; exits 0 then.`, stderr)
	var df dialFlags
	df.register(fs, "the first snapshot")
	asJSON := fs.Bool("json", false, "print one JSON event per line")
	cl, gw, method, params, err := methodCommand(ctx, fs, &df, args)
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var werr error
	err = gw.Watch(wctx, method, params, func(ev gateway.Event) {
		if werr != nil {
			return
		}
		if *asJSON {
			b, _ := json.Marshal(ev)
			_, werr = fmt.Fprintf(stdout, "%s\n", b)
		} else {
			_, werr = io.WriteString(stdout, formatEvent(ev))
		}
		if werr != nil {
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

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", `Usage: tether serve [flags]

Runs a demo server until interrupted. Its registry holds "users" (a user
directory: Get, Names, Add, Remove, Login returning a session by reference,
Model returning a model of the users) and "gauges" (a model that changes
every tick).`, stderr)
	listen := fs.String("listen", "127.0.0.1:7878", "the address to listen on")
	token := fs.String("token", os.Getenv("TETHER_TOKEN"), "require this shared token from clients (broker.WithToken); default $TETHER_TOKEN")
	certFile := fs.String("cert", "", "serve TLS with this PEM certificate")
	keyFile := fs.String("key", "", "PEM key of -cert")
	clientCA := fs.String("client-ca", "", "require client certificates signed by a CA in this PEM file (mutual TLS)")
	tracebacks := fs.Bool("tracebacks", false, "send handler tracebacks with errors (broker.WithTracebacks)")
	tick := fs.Duration("tick", time.Second, "how often the gauges change")
	debug := fs.String("debug", "", "serve expvar's /debug/vars on this address, with the server's Stats as \"tether\"")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || *tick <= 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	scheme := "tcp"
	if *certFile != "" || *keyFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			ln.Close()
			return usageErr("-cert/-key: %v", err)
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if *clientCA != "" {
			pem, err := os.ReadFile(*clientCA)
			if err != nil {
				ln.Close()
				return usageErr("-client-ca: %v", err)
			}
			cfg.ClientCAs = x509.NewCertPool()
			if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
				ln.Close()
				return usageErr("-client-ca: no PEM certificates in %s", *clientCA)
			}
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
		ln = tls.NewListener(ln, cfg)
		scheme = "tls"
	} else if *clientCA != "" {
		ln.Close()
		return usageErr("-client-ca needs -cert and -key")
	}
	reg, drive := newDemo()
	srv := broker.NewServer(reg, broker.WithName("tether-demo"), broker.WithToken(*token), broker.WithTracebacks(*tracebacks),
		broker.WithLogger(warnLogger(stderr))) // each refused handshake, among others
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	driven := make(chan struct{})
	go func() {
		defer close(driven)
		drive(ctx, *tick)
	}()
	if *debug != "" {
		stopDebug, err := serveDebug(*debug, func() any { return srv.Stats() }, stdout)
		if err != nil {
			cancel()
			<-driven
			ln.Close()
			return &exitError{code: exitUnreachable, msg: "-debug: " + err.Error()}
		}
		defer stopDebug()
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "tether demo serving on %s://%s (managers: %s)\n", scheme, ln.Addr(), strings.Join(reg.Names(), ", "))
	var serr error
	select {
	case <-ctx.Done():
	case serr = <-served:
	}
	cancel()
	srv.Close()
	<-driven
	if serr == nil {
		serr = <-served
	}
	if serr != nil && !errors.Is(serr, broker.ErrServerClosed) {
		return serr
	}
	return nil
}

func cmdGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gateway", `Usage: tether gateway -upstream ADDR [flags]

Serves JSON-RPC 2.0 over HTTP POST, calling the managers of the Tether
server at ADDR through a lasting connection (it rides out the server's
outages; requests made meanwhile get error -32001 at once). Try:

  curl -s -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}' \
    http://127.0.0.1:8080/`, stderr)
	var df dialFlags
	df.register(fs, "each call")
	upstream := fs.String("upstream", "", "the Tether server to call (required)")
	listen := fs.String("listen", "127.0.0.1:8080", "the HTTP address to listen on")
	httpToken := fs.String("http-token", os.Getenv("TETHER_HTTP_TOKEN"), "require \"Authorization: Bearer <token>\" from HTTP clients; default $TETHER_HTTP_TOKEN")
	maxBody := fs.Int64("max-body", 1<<20, "the largest request body accepted, in bytes")
	debug := fs.String("debug", "", "serve expvar's /debug/vars on this address, with the upstream client's Stats as \"tether\"")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *upstream == "" || fs.NArg() != 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	if *maxBody <= 0 {
		return usageErr("-max-body must be positive")
	}
	cl, gw, err := df.connect(ctx, *upstream, "tether-gateway", gateway.WithToken(*httpToken), gateway.WithMaxBodySize(*maxBody))
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	defer logRefusals(cl, *upstream, warnLogger(stderr))()
	if *debug != "" {
		stopDebug, err := serveDebug(*debug, func() any { return cl.Stats() }, stdout)
		if err != nil {
			return &exitError{code: exitUnreachable, msg: "-debug: " + err.Error()}
		}
		defer stopDebug()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	// A batch runs at most 8 calls at a time, each within -timeout; the
	// write timeout leaves room for a full batch of slow calls.
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 13*df.timeout + time.Minute, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	fmt.Fprintf(stdout, "tether gateway on http://%s, calling %s\n", ln.Addr(), *upstream)
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx) //nolint:errcheck // closing anyway
	<-served
	return nil
}
