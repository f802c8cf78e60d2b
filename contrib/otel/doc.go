// Package tetherotel traces Tether calls and records their metrics with
// OpenTelemetry: a client and a server interceptor (broker.Interceptor)
// that put every call in a span, carry the W3C trace context from hop to
// hop in the call's metadata, and count calls, failures and calls in
// flight per method.
//
// It is a separate Go module (github.com/tether-go/tether/contrib/otel),
// so that a user of the library who does not use OpenTelemetry never
// downloads it. Its package name is tetherotel, so that it does not clash
// with go.opentelemetry.io/otel.
//
// # Usage
//
// Give both interceptors to every process that should take part in a
// trace, on every connection: a server handles calls (server interceptor)
// and makes callbacks (client interceptor); a client makes calls and
// handles callbacks; a relay does both on each side.
//
//	// A server.
//	srv := broker.NewServer(reg,
//		broker.WithServerInterceptors(tetherotel.ServerInterceptor()),
//		broker.WithClientInterceptors(tetherotel.ClientInterceptor()))
//
//	// A client, or a relay's link upstream.
//	cl, err := remote.Connect(ctx, "tcp", addr, remote.WithBroker(
//		broker.WithClientInterceptors(tetherotel.ClientInterceptor()),
//		broker.WithServerInterceptors(tetherotel.ServerInterceptor())))
//
// The caller's duties:
//
//  1. Set up the SDK first: the interceptors use the global tracer and
//     meter providers, and the global propagator if one is set when they
//     are made, unless given others (WithTracerProvider,
//     WithMeterProvider, WithPropagators).
//  2. Give the interceptors to both sides of every hop: a hop without
//     them breaks the trace in two.
//  3. Shut the SDK's providers down after the connections, so that the
//     last spans are exported.
//
// A call made with a context that holds a span (a handler's context, or
// one the program started a span in) is a child of that span; the
// handler's span is a child of the caller's; so a call from a client
// through a relay to a server is one trace of four spans, each the parent
// of the next: the client's, the relay's server span, the relay's client
// span, the server's. The relay passes on the metadata it received, and
// the trace context its own client span puts in the metadata replaces the
// one it received (what a caller adds wins over what it forwards, see
// broker.IncomingMetadata): the server's span is a child of the relay's,
// not of the client's.
//
// # Spans
//
// Spans follow OpenTelemetry's semantic conventions for RPC. A span is
// named "service/method" and is of kind client (the caller's) or server
// (the handler's). service is the manager's name in the registry it was
// looked up in (broker.Target.Name); for an object that no registry
// handed out (a registry itself, a callback, a reference another method
// returned) it is the object's Go type on the handler's side
// ("*main.Listener") and "unknown" on the caller's, which does not know
// the type. Attributes:
//
//	rpc.system                "tether"
//	rpc.service               service, as in the span's name
//	rpc.method                the method; "_OTHER" on the server for one the target does not have
//	rpc.method_original       that method's name as the caller gave it (server spans only)
//	rpc.response.status_code  the call's broker code: "ok", "not_found", ... (broker.Code's String)
//	server.address, .port     the server's address (client spans)
//	network.peer.address, .port  the caller's address (server spans)
//	tether.peer.name          the peer's name, when it has one
//	tether.call.kind          "subscribe", "resume", "resume-by-token": cache subscriptions only
//
// A peer may call methods by any name: on the server's side a method the
// target does not have is "_OTHER" in the span's name and in the metrics,
// as the conventions say, so that a peer cannot make a series per name
// (the in-flight count, recorded before the call is refused, still names
// it, with a value back at zero). A failed call's span has status Error, with the error's message as its
// description, on both sides, whatever the code. A call refused before a
// handler could run (an unknown method, bad arguments, the target's
// policy) has a server span too. Cache subscriptions (a mirror subscribing
// to or resuming a model, broker.CallSubscribe and the like) are calls and
// get spans, named after the feed object ("unknown/Subscribe" on the
// mirror's side); the changes a model streams afterwards are not calls
// and have none.
//
// # Metrics
//
// Each side records, with the attributes rpc.system, rpc.service and
// rpc.method:
//
//	rpc.client.call.duration, rpc.server.call.duration   histogram, seconds (+ rpc.response.status_code)
//	tether.rpc.client.errors, tether.rpc.server.errors   counter of failed calls (+ rpc.response.status_code)
//	tether.rpc.client.active_calls, ...server.active_calls  up-down counter of calls in flight
//
// The durations are in seconds and named as the current semantic
// conventions name them (rpc.*.call.duration, which replaced the
// millisecond rpc.*.duration); the error and in-flight counts, which the
// conventions do not define, are under tether.*. The peer's address is
// left out of the metrics, so that their cardinality is that of the
// methods.
//
// # Propagation
//
// The trace context travels in the call's metadata (broker.Metadata)
// under the keys the propagator writes: "traceparent" and "tracestate"
// (W3C trace context) and "baggage" by default. Metadata is bounded
// (broker.MaxMetadataBytes): a call whose baggage exceeds it fails with
// broker.ErrInvalidMetadata rather than travel without it.
//
// # Cost
//
// The interceptors cost a few microseconds and a few dozen allocations per
// call and side; see the guide (docs/guide.md, "Observing a running
// system") for figures measured with BenchmarkEcho64 in this module. A
// never-sample sampler saves the spans but not the metrics.
package tetherotel
