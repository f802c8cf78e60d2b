// Package gateway makes a Tether server callable from any language: it
// answers JSON-RPC 2.0 requests sent over HTTP POST by calling the server's
// managers through a remote.Client, so it rides out outages of the server
// the way any Tether client does.
//
// A request names a manager and a method:
//
//	POST / HTTP/1.1
//	Content-Type: application/json
//
//	{"jsonrpc": "2.0", "id": 1, "method": "users.Get", "params": ["alice"]}
//
// and the response carries the method's result, or an error whose data
// names the error the server returned:
//
//	{"jsonrpc": "2.0", "id": 1, "result": {"$type": "example.User", "Name": "alice", ...}}
//	{"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "no user \"bob\"", "data": {"name": "users.not-found"}}}
//
// Batches and notifications behave as the JSON-RPC 2.0 specification says.
// Params are positional, one per parameter after the context, since Go
// methods have no parameter names at run time; an object is taken as the
// single argument of a method with exactly one parameter.
//
// # Values
//
// The gateway asks each manager to describe itself (broker.Describe) and
// converts the params into the method's parameter types: JSON numbers into
// integers or floats as declared (refusing 1.5 for an int), base64 text
// into []byte, RFC 3339 text into time.Time, objects into structs by their
// wire field names. Results come back as JSON the same way, with these
// shapes for what JSON has no word for:
//
//   - a Copyable is an object of its fields plus "$type", its registered
//     name; the same shape is accepted in params;
//   - a reference is a handle, {"$ref": "ref-<uuid>", "type": "<Go type>"}:
//     call its methods as "ref-<uuid>.Method", pass it as an argument as
//     {"$ref": "ref-<uuid>"}, and give it back with "rpc.release". A handle
//     unused for ten minutes is released (WithHandles);
//   - a model (a Cacheable) is its snapshot: {"$cacheable": type, "epoch",
//     "version", "entries": [{"key", "value"}...]}; Watch follows one;
//   - a map whose keys are not text is an object when the keys are integers
//     or booleans, else an array of [key, value] pairs; NaN and the
//     infinities are the strings "NaN", "+Inf", "-Inf". Params accept the
//     same shapes.
//
// Where a parameter is untyped (any), an object with a "$ref" member is
// read as a handle and one with a "$type" member as a Copyable; elsewhere
// these names have no special meaning. Null is refused for parameters that
// cannot be nil (numbers, strings, booleans, plain structs).
//
// # Built-in methods
//
// "rpc.managers" lists the managers, "rpc.describe" ["users"] describes
// one (methods, parameter and result types, which are safe to repeat), and
// "rpc.release" ["ref-…"] gives a handle back.
//
// # Health
//
// GET /healthz (HealthPath) answers a load balancer's probe, without the
// bearer token: 200 and {"status": "serving", "link": "connected"} when
// the upstream server is connected and answers that it serves (the
// gateway asks it with broker.Health at each probe), 503 otherwise, with
// "status" "draining" (the server is shutting down: the gateway's client
// is moving to the next one), "unreachable" (no link, or no answer within
// the gateway's timeout) or "closed", and "link" the state of the
// gateway's client (remote.State).
//
// # Watching a model over HTTP
//
// GET /watch (WatchPath) streams a model's events as Server-Sent Events,
// for browsers (EventSource) and scripts (curl -N):
//
//	GET /watch?method=gauges.Model&params=%5B%5D
//
// method names a method that returns a model, as in a request ("ref-….Model"
// on a handle too); params, optional, is its params as URL-encoded JSON.
// The answer is text/event-stream, one event per Event, flushed at once:
//
//	event: set
//	id: 2
//	data: {"event":"set","version":9,"key":"uptime","value":6}
//
// with the event's kind as its name, ids counting from 1, and the Event as
// JSON (what tether watch -json prints). The stream stays open through the
// server's outages (stale, then the changes missed and live, or reset); a
// client more than 4096 events behind gets a fresh snapshot instead of
// them; an idle stream gets a ": ping" comment every 15 s. A failure
// before the stream starts is a JSON-RPC error body with an HTTP status
// (400 bad params, 401 token, 404 unknown method, 503 out of reach ...);
// after, one "error" event, whose data is the JSON-RPC error object, ends
// the stream (the gateway closed; the model can no longer be followed).
// The bearer token is taken from the Authorization header or, because
// EventSource cannot set headers, from an access_token query parameter:
// a token in a URL ends up in proxies' logs and browser history, so prefer
// the header where the client can set it. A client that stops reading is
// dropped once a write has waited for the gateway's timeout.
//
// # Errors
//
// Besides JSON-RPC's own codes, -32000 is an error the method returned,
// -32001 the server out of reach (during an outage requests fail at once
// with it rather than hang) or a closed gateway, -32002 a call that did
// not finish in time or whose request was cancelled, -32003 a missing or wrong bearer token and -32004 the server refusing the
// gateway's own credentials. The code is chosen from the error's
// broker.Code, which data.code names ("unavailable", "invalid_argument",
// ...); data.name is the error's registered name; data.traceback appears
// only when the server opted in.
package gateway
