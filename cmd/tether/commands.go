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

// register defines the flags on fs; what is what -timeout bounds.
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

// tlsConfig is the client's TLS configuration, nil when the flags ask for
// none.
func (d *dialFlags) tlsConfig() (*tls.Config, error) {
	if !d.useTLS && d.caFile == "" && d.certFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: d.serverName}
	if d.caFile != "" {
		pool, err := certPool("-cacert", d.caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if d.certFile != "" || d.keyFile != "" {
		cert, err := keyPair(d.certFile, d.keyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// certPool reads the PEM CA certificates in file, which the flag named
// flagName gave.
func certPool(flagName, file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, usageErr("%s: %v", flagName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usageErr("%s: no PEM certificates in %s", flagName, file)
	}
	return pool, nil
}

// keyPair reads -cert and -key.
func keyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, usageErr("-cert/-key: %v", err)
	}
	return cert, nil
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
	bopts, err := d.brokerOptions(name)
	if err != nil {
		return nil, nil, err
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

// brokerOptions are the connection's options: the name it announces
// (-name, else none with a client certificate, else name), -token, and
// TLS as the flags ask.
func (d *dialFlags) brokerOptions(name string) ([]broker.Option, error) {
	cfg, err := d.tlsConfig()
	if err != nil {
		return nil, err
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
	return bopts, nil
}

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

// exitCodes are the command's exit statuses for the classes of error that
// have their own; every other failed call exits exitCallFailed.
var exitCodes = map[broker.Code]int{
	broker.OK:               exitOK,
	broker.Canceled:         exitInterrupted,
	broker.Unavailable:      exitUnreachable,
	broker.DeadlineExceeded: exitUnreachable,
	broker.Unauthenticated:  exitRefused,
}

// exitCode is the command's exit status for an error of class code.
func exitCode(code broker.Code) int {
	if c, ok := exitCodes[code]; ok {
		return c
	}
	return exitCallFailed
}

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

// cmdServe runs the demo server until interrupted.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", `Usage: tether serve [flags]

Runs a demo server until interrupted. Its registry holds "users" (a user
directory: Get, Names, Add, Remove, Login returning a session by reference,
Model returning a model of the users) and "gauges" (a model that changes
every tick).

On SIGTERM or SIGINT it drains (broker.Server.Shutdown): it stops
accepting, tells its clients it is going away (a remote.Client redials at
once), refuses new calls, lets the calls running finish for up to -grace,
then closes.`, stderr)
	var f serveFlags
	f.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 || f.tick <= 0 || f.grace < 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	ln, scheme, err := f.listen()
	if err != nil {
		return err
	}
	reg, drive := newDemo()
	srv := broker.NewServer(reg, broker.WithName("tether-demo"), broker.WithToken(f.token), broker.WithTracebacks(f.tracebacks),
		broker.WithLogger(warnLogger(stderr))) // each refused handshake, among others
	stopDebug, err := startDebug(f.debug, func() any { return srv.Stats() }, stdout)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopDebug()
	banner := fmt.Sprintf("tether demo serving on %s://%s (managers: %s)\n", scheme, ln.Addr(), strings.Join(reg.Names(), ", "))
	d := demoRun{srv: srv, ln: ln, grace: f.grace, drive: func(ctx context.Context) { drive(ctx, f.tick) },
		announce: func() { fmt.Fprint(stdout, banner) }, drain: func() { fmt.Fprintf(stdout, "tether demo draining (up to %v)\n", f.grace) }, stderr: stderr}
	return d.run(ctx)
}

// serveFlags are the flags of tether serve.
type serveFlags struct {
	addr, token                 string
	certFile, keyFile, clientCA string
	tracebacks                  bool
	tick, grace                 time.Duration
	debug                       string
}

// register defines the flags on fs.
func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "listen", "127.0.0.1:7878", "the address to listen on")
	fs.StringVar(&f.token, "token", os.Getenv("TETHER_TOKEN"), "require this shared token from clients (broker.WithToken); default $TETHER_TOKEN")
	fs.StringVar(&f.certFile, "cert", "", "serve TLS with this PEM certificate")
	fs.StringVar(&f.keyFile, "key", "", "PEM key of -cert")
	fs.StringVar(&f.clientCA, "client-ca", "", "require client certificates signed by a CA in this PEM file (mutual TLS)")
	fs.BoolVar(&f.tracebacks, "tracebacks", false, "send handler tracebacks with errors (broker.WithTracebacks)")
	fs.DurationVar(&f.tick, "tick", time.Second, "how often the gauges change")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "on SIGTERM or SIGINT, how long calls running may take to finish before they are cut")
	fs.StringVar(&f.debug, "debug", "", "serve expvar's /debug/vars on this address, with the server's Stats as \"tether\"")
}

// listen listens on -listen, with TLS when -cert and -key are given;
// scheme is "tls" then, else "tcp".
func (f *serveFlags) listen() (ln net.Listener, scheme string, err error) {
	ln, err = net.Listen("tcp", f.addr)
	if err != nil {
		return nil, "", &exitError{code: exitUnreachable, msg: err.Error()}
	}
	cfg, err := f.tlsConfig()
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	if cfg == nil {
		return ln, "tcp", nil
	}
	return tls.NewListener(ln, cfg), "tls", nil
}

// tlsConfig is the server's TLS configuration, requiring client
// certificates with -client-ca; nil without -cert and -key.
func (f *serveFlags) tlsConfig() (*tls.Config, error) {
	if f.certFile == "" && f.keyFile == "" {
		if f.clientCA != "" {
			return nil, usageErr("-client-ca needs -cert and -key")
		}
		return nil, nil
	}
	cert, err := keyPair(f.certFile, f.keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if f.clientCA != "" {
		if cfg.ClientCAs, err = certPool("-client-ca", f.clientCA); err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// demoRun is what tether serve runs: srv serving ln, and drive, the loop
// that changes the demo's model.
type demoRun struct {
	srv      *broker.Server
	ln       net.Listener
	grace    time.Duration         // how long the drain may take
	drive    func(context.Context) // changes the model until its context ends
	announce func()                // runs once the server serves
	drain    func()                // runs when the drain begins
	stderr   io.Writer             // where a drain that cut calls is reported
}

// run serves and drives until ctx ends (a signal: the server then drains
// for up to d.grace) or serving fails. It stops both before it returns.
func (d demoRun) run(ctx context.Context) error {
	dctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	driven := make(chan struct{})
	go func() {
		defer close(driven)
		d.drive(dctx)
	}()
	served := make(chan error, 1)
	go func() { served <- d.srv.Serve(d.ln) }()
	d.announce()
	var serr error
	select {
	case <-ctx.Done():
		d.drain()
		// The model keeps changing while the calls running finish: a
		// mirror being served still sees it live.
		sctx, stop := context.WithTimeout(context.Background(), d.grace)
		if err := d.srv.Shutdown(sctx); err != nil {
			fmt.Fprintf(d.stderr, "tether serve: %v\n", err)
		}
		stop()
		serr = <-served
	case serr = <-served:
	}
	cancel()
	d.srv.Close()
	<-driven
	if !errors.Is(serr, broker.ErrServerClosed) {
		return serr
	}
	return nil
}

// cmdGateway serves JSON-RPC 2.0 over HTTP in front of a server until
// interrupted.
func cmdGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gateway", `Usage: tether gateway -upstream ADDR [flags]

Serves JSON-RPC 2.0 over HTTP POST, calling the managers of the Tether
server at ADDR through a lasting connection (it rides out the server's
outages; requests made meanwhile get error -32001 at once). Try:

  curl -s -H 'Content-Type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}' \
    http://127.0.0.1:8080/
  curl -N 'http://127.0.0.1:8080/watch?method=gauges.Model'`, stderr)
	var df dialFlags
	df.register(fs, "each call")
	var f gatewayFlags
	f.register(fs)
	fs.BoolVar(&f.ui, "ui", false, "also serve the web inspector at /ui/ (as tether ui does)")
	if err := f.parse(fs, args); err != nil {
		return err
	}
	cl, gw, err := df.connect(ctx, f.upstream, "tether-gateway", gateway.WithToken(f.httpToken), gateway.WithMaxBodySize(f.maxBody), f.inspector())
	if err != nil {
		return err
	}
	defer cl.Close()
	defer gw.Close()
	defer logRefusals(cl, f.upstream, warnLogger(stderr))()
	stopDebug, err := startDebug(f.debug, func() any { return cl.Stats() }, stdout)
	if err != nil {
		return err
	}
	defer stopDebug()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return &exitError{code: exitUnreachable, msg: err.Error()}
	}
	// A batch runs at most 8 calls at a time, each within -timeout; the
	// write timeout leaves room for a full batch of slow calls.
	hs := &http.Server{Handler: gw, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 13*df.timeout + time.Minute, IdleTimeout: 2 * time.Minute}
	// Shutdown waits for the requests in flight, and a /watch stream lasts
	// until its client goes: closing the gateway ends the streams (with an
	// "error" event) so that Shutdown does not wait for them.
	hs.RegisterOnShutdown(func() { gw.Close() })
	return serveHTTP(ctx, hs, ln, func() {
		fmt.Fprintf(stdout, "tether gateway on http://%s, calling %s\n", ln.Addr(), f.upstream)
		f.announceInspector(stdout, ln.Addr())
	})
}

// gatewayFlags are the flags of tether gateway, besides the dial flags.
type gatewayFlags struct {
	upstream, addr, httpToken string
	maxBody                   int64
	debug                     string
	ui                        bool // serve the web inspector too (tether gateway -ui, tether ui)
}

// register defines the flags on fs.
func (f *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.upstream, "upstream", "", "the Tether server to call (required)")
	fs.StringVar(&f.addr, "listen", "127.0.0.1:8080", "the HTTP address to listen on")
	fs.StringVar(&f.httpToken, "http-token", os.Getenv("TETHER_HTTP_TOKEN"), "require \"Authorization: Bearer <token>\" from HTTP clients; default $TETHER_HTTP_TOKEN")
	fs.Int64Var(&f.maxBody, "max-body", 1<<20, "the largest request body accepted, in bytes")
	fs.StringVar(&f.debug, "debug", "", "serve expvar's /debug/vars on this address, with the upstream client's Stats as \"tether\"")
}

// parse parses args and refuses a missing -upstream, arguments, and a
// -max-body that is not positive.
func (f *gatewayFlags) parse(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.upstream == "" || fs.NArg() != 0 {
		fs.Usage()
		return &exitError{code: exitUsage}
	}
	if f.maxBody <= 0 {
		return usageErr("-max-body must be positive")
	}
	return nil
}

// serveHTTP serves ln with hs until ctx ends (then shuts hs down, waiting
// up to 5 s for requests in flight) or serving fails; announce runs once
// hs serves.
func serveHTTP(ctx context.Context, hs *http.Server, ln net.Listener, announce func()) error {
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	announce()
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
