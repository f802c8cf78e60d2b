package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/arity"
	"github.com/tether-go/tether/internal/feed"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/internal/replay"
	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Error codes. The first five are JSON-RPC 2.0's own; the others are in
// the range it leaves to implementations.
const (
	CodeParseError     = -32700 // the body is not JSON
	CodeInvalidRequest = -32600 // JSON, but not a JSON-RPC request
	CodeMethodNotFound = -32601 // no such manager, handle or method
	CodeInvalidParams  = -32602 // the params do not fit the method
	CodeInternal       = -32603 // the gateway failed
	CodeRemote         = -32000 // the method returned an error (data.name says which)
	CodeUnavailable    = -32001 // the upstream server is out of reach
	CodeTimeout        = -32002 // the call did not finish in time
	CodeUnauthorized   = -32003 // a missing or wrong bearer token
	CodeRefused        = -32004 // the upstream server refuses the gateway's own connection (credentials, version)
	CodeHandleExpired  = -32005 // a handle whose reference cannot be obtained again (its server restarted or the link dropped)
)

// ErrClosed is returned by calls on a closed gateway.
var ErrClosed = broker.NewError(broker.Unavailable, errors.New("tether: gateway closed"))

// Error is a JSON-RPC error object, and the error Call and Watch return.
type Error struct {
	Code    int        `json:"code"`
	Message string     `json:"message"`
	Data    *ErrorData `json:"data,omitempty"`

	err    error  // what it stands for, when that is one of this package's sentinels
	public string // the message for an HTTP client, when it is not Message
}

// forHTTP returns the error as an HTTP client gets it: the gateway's own
// link failures and network errors name the server it cannot reach but
// not where it is (see package hop).
func (e *Error) forHTTP() *Error {
	if e.public == "" {
		return e
	}
	c := *e
	c.Message, c.public = e.public, ""
	return &c
}

// Unwrap returns the error the JSON-RPC error stands for: ErrClosed for a
// call on a closed gateway, ErrInterrupted for a cancelled one, else the
// error of the call (so errors.Is(err, broker.ErrAuthFailed) holds when the
// upstream server refused the gateway's client, and broker.CodeOf works on
// what Call returns).
func (e *Error) Unwrap() error { return e.err }

// ErrInterrupted is what a call whose context was cancelled (its HTTP
// client went away, or the command was interrupted) fails with.
var ErrInterrupted = broker.NewError(broker.Canceled, errors.New("tether: gateway request interrupted"))

// newError is an error the gateway finds itself: rpc is its JSON-RPC code,
// code its class, name its registered name. It unwraps to the registered
// error of that name when there is one (broker.ErrBadArguments for
// "tether.bad-arguments"), so errors.Is and broker.CodeOf work on it.
func newError(rpc int, code broker.Code, name, msg string) *Error {
	cause := errors.New(msg)
	if entry, ok := typereg.ErrorByName(name); ok && entry.Value != nil {
		cause = fmt.Errorf("%w: %s", entry.Value, msg)
	}
	return &Error{Code: rpc, Message: msg, Data: &ErrorData{Name: name, Code: code.String()}, err: broker.NewError(code, cause)}
}

// expiredError is the error of a call on a handle whose reference cannot
// be obtained again, err: the call that returned it is not declared
// idempotent, so after the link to the server dropped (the server
// restarted, say) nobody may repeat it but the client.
func expiredError(err error) *Error {
	return &Error{Code: CodeHandleExpired, Message: "handle expired: obtain it again", Data: &ErrorData{Name: "tether.handle-expired", Code: broker.FailedPrecondition.String()}, err: err}
}

// closedError is the error of a call on a closed gateway.
func closedError() *Error {
	return &Error{Code: CodeUnavailable, Message: ErrClosed.Error(), Data: &ErrorData{Name: "tether.closed", Code: broker.CodeOf(ErrClosed).String()}, err: ErrClosed}
}

// ErrorData says which error it was: its registered name on the server
// (for example "users.not-found", "tether.bad-arguments"), and the
// server's traceback when the server opted in (broker.WithTracebacks).
type ErrorData struct {
	Name string `json:"name"`
	// Code is the error's class, broker.Code's name ("unavailable",
	// "invalid_argument", ...): the same for every error of a kind, where
	// Name tells errors apart.
	Code      string `json:"code,omitempty"`
	Traceback string `json:"traceback,omitempty"`
}

// Error returns the message, prefixed by the name when the message does
// not already say it (a registered error of the application's, such as
// "users.not-found: no user \"bob\"").
func (e *Error) Error() string {
	if e.Data != nil && e.Data.Name != "" && !strings.HasPrefix(e.Message, "tether:") {
		return e.Data.Name + ": " + e.Message
	}
	return e.Message
}

// Gateway answers JSON-RPC 2.0 requests by calling the managers of a
// Tether server through a remote.Client, and is an http.Handler for POST
// requests. It is safe for concurrent use.
type Gateway struct {
	cl      *remote.Client
	opts    options
	handles *handles
	done    chan struct{}
	once    sync.Once
	unwatch func() // stops logging the upstream link's transitions, or nil

	mu    sync.Mutex
	descs map[*remote.Ref]*broker.Description
}

// New returns a gateway to the server cl connects to. The gateway does not
// own cl: close the gateway, then the client.
func New(cl *remote.Client, opts ...Option) (*Gateway, error) {
	o := defaults()
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cl:      cl,
		opts:    o,
		handles: newHandles(o.handleIdle, o.maxHandles),
		done:    make(chan struct{}),
		descs:   map[*remote.Ref]*broker.Description{},
	}
	g.handles.dropped = g.forget // a handle's description goes with it
	if o.logger != silent {
		g.unwatch = g.watchLink()
	}
	return g, nil
}

// Close releases every handle the gateway gave out; later requests fail
// with ErrClosed. Close is idempotent.
func (g *Gateway) Close() error {
	g.once.Do(func() {
		if g.unwatch != nil {
			g.unwatch()
		}
		close(g.done)
		g.handles.closeAll()
	})
	return nil
}

// closed reports whether Close was called.
func (g *Gateway) closed() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// invocation is a method call ready to go: its target, its description and
// its arguments converted for the wire.
type invocation struct {
	target *remote.Ref
	md     broker.MethodDescription
	args   []any
}

// Call calls method with params and returns the result as JSON. method is
// "manager.Method" (the manager's registry name; a name with dots is
// split at its last dot), "ref-….Method" on a handle an earlier result gave
// out, or one of the built-ins: "rpc.managers" lists the managers,
// "rpc.describe" ["name" or "ref-…"] describes one, "rpc.release"
// ["ref-…"] gives a handle back, "rpc.discover" answers an OpenRPC document
// of every method. params is a JSON array of the method's
// arguments, an object for a method of exactly one parameter, or empty.
// A failure is an *Error.
func (g *Gateway) Call(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	if g.closed() {
		return nil, closedError()
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.timeout)
	defer cancel()
	var result any
	var err error
	if strings.HasPrefix(method, "rpc.") {
		result, err = g.builtin(ctx, method, params)
	} else {
		result, err = g.invoke(ctx, method, params)
	}
	if err != nil {
		return nil, errorFor(err)
	}
	out, err := json.Marshal(result)
	if err != nil {
		return nil, newError(CodeInternal, broker.Internal, "tether.internal", "writing the result: "+err.Error())
	}
	return out, nil
}

// invoke calls a manager's or a handle's method and converts its result
// to JSON.
func (g *Gateway) invoke(ctx context.Context, method string, params json.RawMessage) (any, error) {
	inv, err := g.prepare(ctx, method, params)
	if err != nil {
		return nil, err
	}
	var reply any
	var rp any = &reply
	if inv.md.Result == nil {
		rp = nil
	}
	if err := inv.target.Call(broker.WithRawCopyables(ctx), inv.md.Name, rp, inv.args...); err != nil {
		if errors.Is(err, broker.ErrBadArguments) {
			g.forget(inv.target) // the server may have changed: describe it again next time
		}
		return nil, err
	}
	if r, ok := reply.(*remote.Ref); ok && r.Cacheable() {
		defer r.Release() // a model is shown by its snapshot; nothing keeps it
	}
	return g.toJSON(ctx, reply, inv.md.Result)
}

// prepare resolves method's target, finds the method in its description and
// converts params into its arguments.
func (g *Gateway) prepare(ctx context.Context, method string, params json.RawMessage) (*invocation, error) {
	i := strings.LastIndexByte(method, '.')
	if i <= 0 || i == len(method)-1 {
		return nil, newError(CodeMethodNotFound, broker.Unimplemented, "tether.unknown-method", fmt.Sprintf("method %q: want manager.Method", method))
	}
	target, err := g.target(ctx, method[:i])
	if err != nil {
		return nil, err
	}
	md, err := g.method(ctx, target, method[:i], method[i+1:])
	if err != nil {
		return nil, err
	}
	args, err := g.args(md, params)
	if err != nil {
		return nil, err
	}
	return &invocation{target: target, md: md, args: args}, nil
}

// method finds the method called name in target's description, asking the
// server again when the description it has does not list it (the server
// may have changed).
func (g *Gateway) method(ctx context.Context, target *remote.Ref, targetName, name string) (broker.MethodDescription, error) {
	for _, fresh := range []bool{false, true} {
		d, err := g.describe(ctx, target, fresh)
		if err != nil {
			return broker.MethodDescription{}, err
		}
		if md, ok := d.Method(name); ok {
			return md, nil
		}
	}
	return broker.MethodDescription{}, newError(CodeMethodNotFound, broker.Unimplemented, "tether.unknown-method", fmt.Sprintf("%s has no method %q", targetName, name))
}

// target is the manager registered under name, or the handle name.
func (g *Gateway) target(ctx context.Context, name string) (*remote.Ref, error) {
	if strings.HasPrefix(name, "ref-") {
		if r := g.handles.get(name); r != nil {
			return r, nil
		}
		return nil, newError(CodeMethodNotFound, broker.NotFound, "tether.unknown-handle", fmt.Sprintf("%v: %s", errUnknownHandle, name))
	}
	return g.cl.Registry().Lookup(ctx, name)
}

// describe returns target's description, asking the server when it is not
// known yet or fresh is set.
func (g *Gateway) describe(ctx context.Context, target *remote.Ref, fresh bool) (*broker.Description, error) {
	g.mu.Lock()
	d := g.descs[target]
	g.mu.Unlock()
	if d != nil && !fresh {
		return d, nil
	}
	nd, err := target.Describe(ctx)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.descs[target] = &nd
	g.mu.Unlock()
	return &nd, nil
}

// forget drops target's description: target was released, or the server
// may have changed.
func (g *Gateway) forget(target *remote.Ref) {
	g.mu.Lock()
	delete(g.descs, target)
	g.mu.Unlock()
}

// args converts params into md's arguments.
func (g *Gateway) args(md broker.MethodDescription, params json.RawMessage) ([]any, error) {
	list, err := paramList(md, params)
	if err != nil {
		return nil, err
	}
	if err := checkCount(md, len(list)); err != nil {
		return nil, err
	}
	args := make([]any, len(list))
	for i, v := range list {
		if args[i], err = g.fromJSON(v, paramType(md, i), fmt.Sprintf("params[%d]", i)); err != nil {
			return nil, badArguments(err.Error())
		}
	}
	return args, nil
}

// badArguments is the error for params that do not fit the method.
func badArguments(msg string) *Error {
	return newError(CodeInvalidParams, broker.InvalidArgument, "tether.bad-arguments", msg)
}

// paramList reads params as the list of arguments: an array, an object
// for a method of exactly one parameter, or nothing.
func paramList(md broker.MethodDescription, params json.RawMessage) ([]any, error) {
	p := strings.TrimSpace(string(params))
	if p == "" || p == "null" {
		return nil, nil
	}
	v, err := decodeJSON([]byte(p))
	if err != nil {
		return nil, badArguments("params: " + err.Error())
	}
	switch x := v.(type) {
	case []any:
		return x, nil
	case map[string]any:
		if len(md.Params) != 1 || md.Variadic {
			return nil, badArguments(fmt.Sprintf("%s takes %d parameters by position: pass params as an array", md.Name, len(md.Params)))
		}
		return []any{x}, nil
	}
	return nil, badArguments("params must be an array or an object")
}

// checkCount refuses a number of arguments md does not take.
func checkCount(md broker.MethodDescription, got int) error {
	n := len(md.Params)
	if got == n || md.Variadic && got >= n-1 {
		return nil
	}
	lo, hi := n, n
	if md.Variadic {
		lo, hi = lo-1, -1
	}
	return badArguments(fmt.Sprintf("%s takes %s, got %d", md.Name, arity.Words(lo, hi), got))
}

// paramType is the type of md's i-th argument: a variadic method's last
// parameter gives its element type to the arguments from there on.
func paramType(md broker.MethodDescription, i int) *broker.TypeDescription {
	n := len(md.Params)
	switch {
	case md.Variadic && i >= n-1:
		return md.Params[n-1].Elem
	case i < n:
		return &md.Params[i]
	}
	return nil
}

// builtins are the rpc.* methods, by name.
var builtins = map[string]func(g *Gateway, ctx context.Context, call builtinCall) (any, error){
	"rpc.managers": (*Gateway).managers,
	"rpc.describe": (*Gateway).describeBuiltin,
	"rpc.release":  (*Gateway).release,
	"rpc.discover": (*Gateway).discover,
}

// builtinCall is a call of a built-in method: its name and its arguments,
// which are names.
type builtinCall struct {
	method string
	args   []string
}

// name is the call's one argument.
func (c builtinCall) name() (string, error) {
	if len(c.args) != 1 {
		return "", badArguments(c.method + " takes one name")
	}
	return c.args[0], nil
}

// builtin answers the rpc.* methods.
func (g *Gateway) builtin(ctx context.Context, method string, params json.RawMessage) (any, error) {
	call := builtinCall{method: method}
	if p := strings.TrimSpace(string(params)); p != "" && p != "null" {
		if err := json.Unmarshal(params, &call.args); err != nil {
			return nil, badArguments(method + " takes an array of strings")
		}
	}
	answer, ok := builtins[method]
	if !ok {
		return nil, newError(CodeMethodNotFound, broker.Unimplemented, "tether.unknown-method", fmt.Sprintf("no built-in method %q (there are rpc.managers, rpc.describe, rpc.release, rpc.discover)", method))
	}
	return answer(g, ctx, call)
}

// managers answers rpc.managers: the registry's names, [] when none.
func (g *Gateway) managers(ctx context.Context, _ builtinCall) (any, error) {
	names, err := g.cl.Registry().List(ctx)
	if err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

// describeBuiltin answers rpc.describe: the description of a manager or a
// handle, asked afresh.
func (g *Gateway) describeBuiltin(ctx context.Context, call builtinCall) (any, error) {
	name, err := call.name()
	if err != nil {
		return nil, err
	}
	target, err := g.target(ctx, name)
	if err != nil {
		return nil, err
	}
	return g.describe(ctx, target, true)
}

// release answers rpc.release: the handle is dropped and its reference
// released.
func (g *Gateway) release(_ context.Context, call builtinCall) (any, error) {
	id, err := call.name()
	if err != nil {
		return nil, err
	}
	if !g.handles.remove(id) {
		return nil, newError(CodeInvalidParams, broker.NotFound, "tether.unknown-handle", fmt.Sprintf("%v: %s", errUnknownHandle, id))
	}
	return nil, nil
}

// Describe returns the description of the manager registered under name,
// or of a handle.
func (g *Gateway) Describe(ctx context.Context, name string) (broker.Description, error) {
	if g.closed() {
		return broker.Description{}, closedError()
	}
	ctx, cancel := context.WithTimeout(ctx, g.opts.timeout)
	defer cancel()
	target, err := g.target(ctx, name)
	if err != nil {
		return broker.Description{}, errorFor(err)
	}
	d, err := g.describe(ctx, target, true)
	if err != nil {
		return broker.Description{}, errorFor(err)
	}
	return *d, nil
}

// errorFor turns a failed call into a JSON-RPC error: the server's errors
// keep their registered name, a dead link is "unavailable", a deadline is
// "timeout". The error keeps its whole message for the gateway's own
// process (the tether command shows it), and the message an HTTP client
// gets instead, in which the gateway's own link failures name no address
// (see redacted).
func errorFor(err error) *Error {
	e := errorFrom(err)
	if pub := errorFrom(redacted{err}); pub.Message != e.Message {
		e.public = pub.Message
	}
	return e
}

// errorFrom is errorFor with one message. The JSON-RPC code comes from
// the error's broker.Code (see rpcCode); data.name is the error's
// registered name, data.code its broker.Code.
func errorFrom(err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	code := broker.CodeOf(err)
	e := &Error{Code: rpcCode(code), Message: err.Error(), Data: &ErrorData{Name: errorName(err, code), Code: code.String()}, err: err}
	if errors.Is(err, replay.ErrNotReplayable) {
		return expiredError(err)
	}
	if name := refusalName(err); name != "" {
		// The upstream refused the gateway's own client: not an error of
		// the method called, and not an outage either: it lasts until
		// someone fixes the gateway's credentials (or version).
		e.Code, e.Data.Name = CodeRefused, name
		return e
	}
	var re *broker.RemoteError
	if errors.As(err, &re) {
		return fromRemote(e, err, re)
	}
	return fromLocal(e, err)
}

// fromRemote completes e for an error the server returned, re.
func fromRemote(e *Error, err error, re *broker.RemoteError) *Error {
	e.Message, e.Data.Traceback = re.Message, re.Traceback
	if errors.Is(err, context.DeadlineExceeded) {
		// The server's method ran out of time: most often the deadline
		// that travelled with the call ended its context first, the same
		// timeout seen from there. The server's own words follow.
		e.Message = "tether: the call did not finish in time: " + strings.TrimPrefix(re.Message, "tether: ")
		e.Data.Name = "tether.timeout"
		return e
	}
	if errors.Is(re, registry.ErrNotFound) {
		e.Code = CodeMethodNotFound // the manager half of "manager.Method"
	}
	return e
}

// fromLocal completes e for an error of the gateway's own side: the
// request's context, the gateway closed, a manager not found.
func fromLocal(e *Error, err error) *Error {
	switch {
	case errors.Is(err, ErrInterrupted), errors.Is(err, context.Canceled):
		e.Message = "tether: the request was cancelled"
		e.err = ErrInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		e.Message = "tether: the call did not finish in time: " + strings.TrimPrefix(err.Error(), "tether: ")
	case errors.Is(err, ErrClosed):
		return closedError()
	case errors.Is(err, registry.ErrNotFound):
		e.Code = CodeMethodNotFound
	}
	return e
}

// rpcCodes are the JSON-RPC codes of the classes of error that have their
// own: the protocol's for a call that does not fit the method, and this
// package's for an outage and a deadline.
var rpcCodes = map[broker.Code]int{
	broker.InvalidArgument:  CodeInvalidParams,
	broker.Unimplemented:    CodeMethodNotFound,
	broker.Unavailable:      CodeUnavailable,
	broker.DeadlineExceeded: CodeTimeout,
	broker.Canceled:         CodeTimeout,
}

// rpcCode is the JSON-RPC code of an error of class code (see rpcCodes);
// every other error a method returned is CodeRemote (data.code and
// data.name say more).
func rpcCode(code broker.Code) int {
	if c, ok := rpcCodes[code]; ok {
		return c
	}
	return CodeRemote // a refusal of the gateway's own connection is CodeRefused: see errorFrom
}

// sentinelName names the errors of one sentinel (or one of several) in
// data.name.
type sentinelName struct {
	is   []error
	name string
}

// nameOf returns the name of the first entry err matches, or "".
func nameOf(err error, names []sentinelName) string {
	for _, n := range names {
		for _, target := range n.is {
			if errors.Is(err, target) {
				return n.name
			}
		}
	}
	return ""
}

// linkNames are the names of the errors of the gateway's own calls that are
// not an error the method returned: the deadline, a cancellation, the link.
var linkNames = []sentinelName{
	{[]error{context.DeadlineExceeded}, "tether.timeout"},
	{[]error{context.Canceled, ErrInterrupted}, "tether.cancelled"},
	{[]error{remote.ErrDisconnected}, "tether.disconnected"},
	{[]error{broker.ErrConnectionLost}, "tether.connection-lost"},
	{[]error{feed.ErrSourceLost}, "tether.source-lost"}, // before dead-reference, which it matches too
	{[]error{broker.ErrDeadReference}, "tether.dead-reference"},
	{[]error{errUnknownHandle}, "tether.unknown-handle"},
}

// errorName is the name an error goes by in data.name: the far side's
// registered name for a remote error, the registered name of the first
// registered error in the chain, else a name for its code. Read
// data.code to classify; the name says which error it was.
func errorName(err error, code broker.Code) string {
	var re *broker.RemoteError
	if errors.As(err, &re) {
		return re.Name
	}
	if name := nameOf(err, linkNames); name != "" {
		return name
	}
	if entry, _ := typereg.FindError(err); entry != nil {
		return entry.Name
	}
	return "tether." + strings.ReplaceAll(code.String(), "_", "-")
}

// refusalNames are the names of the upstream server's refusals of the
// gateway's own client.
var refusalNames = []sentinelName{
	{[]error{broker.ErrAuthFailed}, "tether.auth-failed"},
	{[]error{broker.ErrVersionMismatch}, "tether.version-mismatch"},
	{[]error{remoteable.ErrAccessDenied}, "tether.access-denied"},
}

// refusalName returns the name of the refusal err is, if the upstream
// server refused the gateway's client, else "".
func refusalName(err error) string {
	var re *broker.RemoteError
	if errors.As(err, &re) {
		return "" // what a call returned (a method's access check, say), or a relay passed on
	}
	return nameOf(err, refusalNames)
}

// gatewayHop is how the gateway names itself in the errors of its own
// links that it answers with.
var gatewayHop = hop.Self{Role: "gateway"}

// redacted is an error as an HTTP client reads it: the gateway's own link
// failures and network errors say which server the gateway cannot reach,
// not where it is (package hop). It matches what the error matches.
type redacted struct{ error }

func (r redacted) Error() string {
	msg, _ := hop.Redact(r.error, gatewayHop)
	return msg
}

func (r redacted) Unwrap() error { return r.error }

// Option configures New.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	token      string
	maxBody    int64
	maxBatch   int
	timeout    time.Duration
	handleIdle time.Duration
	maxHandles int
	cors       []string // origins allowed (WithCORS), "*" for any
	corsSet    bool
	logger     *slog.Logger
	loggerSet  bool
	inspector  bool // serve the web inspector at /ui/ (WithInspector)
}

// DefaultTimeout bounds each call of a gateway not given WithTimeout; it
// is tether gateway's -timeout default too.
const DefaultTimeout = 30 * time.Second

// defaults are the options before the caller's.
func defaults() options {
	return options{maxBody: 1 << 20, maxBatch: 100, timeout: DefaultTimeout, handleIdle: 10 * time.Minute, maxHandles: 10000, logger: silent}
}

// validate refuses options that cannot work.
func (o *options) validate() error {
	switch {
	case o.maxBody <= 0:
		return fmt.Errorf("%w: gateway.WithMaxBodySize needs a positive size", broker.ErrInvalidOption)
	case o.maxBatch <= 0:
		return fmt.Errorf("%w: gateway.WithMaxBatch needs a positive count", broker.ErrInvalidOption)
	case o.timeout <= 0:
		return fmt.Errorf("%w: gateway.WithTimeout needs a positive duration", broker.ErrInvalidOption)
	case o.handleIdle <= 0 || o.maxHandles <= 0:
		return fmt.Errorf("%w: gateway.WithHandles needs a positive idle time and count", broker.ErrInvalidOption)
	case o.loggerSet && o.logger == nil:
		return fmt.Errorf("%w: gateway.WithLogger needs a logger (leave it out for none)", broker.ErrInvalidOption)
	case o.corsSet:
		return validateCORS(o.cors)
	}
	return nil
}

// WithToken makes the gateway require "Authorization: Bearer <token>" on
// every HTTP request (compared in constant time); others get 401.
func WithToken(token string) Option {
	return optionFunc(func(o *options) { o.token = token })
}

// WithMaxBodySize limits request bodies (default 1 MiB); a larger one gets
// HTTP 413 and is not read further.
func WithMaxBodySize(n int64) Option {
	return optionFunc(func(o *options) { o.maxBody = n })
}

// WithMaxBatch limits the requests in one batch (default 100).
func WithMaxBatch(n int) Option {
	return optionFunc(func(o *options) { o.maxBatch = n })
}

// WithTimeout bounds each call (default DefaultTimeout, 30 s). It travels
// to the server as the call's deadline, and also bounds each write of a
// /watch stream (a client that stopped reading is dropped after it).
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.timeout = d })
}

// WithHandles sets how long a handle to a reference may go unused before
// the gateway releases it (default 10 minutes) and how many it keeps at
// most (default 10000; beyond, the least recently used goes).
func WithHandles(idle time.Duration, max int) Option {
	return optionFunc(func(o *options) { o.handleIdle, o.maxHandles = idle, max })
}
