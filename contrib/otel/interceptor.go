package tetherotel

import (
	"context"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/tether-go/tether/broker"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and the meter the
// interceptors use.
const ScopeName = "github.com/tether-go/tether/contrib/otel"

// The attribute keys the interceptors set (see the package documentation).
const (
	// SystemKey is rpc.system; its value is always "tether".
	SystemKey = attribute.Key("rpc.system")
	// ServiceKey is rpc.service: the manager's registry name, else the
	// target's Go type, else "unknown".
	ServiceKey = attribute.Key("rpc.service")
	// MethodKey is rpc.method: the method's name, or "_OTHER" on the
	// handler's side for a method the target does not have.
	MethodKey = attribute.Key("rpc.method")
	// MethodOriginalKey is rpc.method_original: the name the caller gave
	// a method the target does not have (server spans only).
	MethodOriginalKey = attribute.Key("rpc.method_original")
	// CodeKey is rpc.response.status_code: the call's broker code, as
	// broker.Code's String gives it ("ok", "not_found", ...).
	CodeKey = attribute.Key("rpc.response.status_code")
	// KindKey is tether.call.kind, set on the spans of cache
	// subscriptions only (broker.CallKind's String: "subscribe",
	// "resume", "resume-by-token").
	KindKey = attribute.Key("tether.call.kind")
	// PeerNameKey is tether.peer.name: the name the peer announced or was
	// verified under, on the spans of calls whose peer has one.
	PeerNameKey = attribute.Key("tether.peer.name")
)

// system is the rpc.system attribute of every call.
var system = SystemKey.String("tether")

// otherMethod is rpc.method for a method the target does not have.
const otherMethod = "_OTHER"

// ClientInterceptor returns an interceptor for broker.WithClientInterceptors
// that puts every call this side makes in a client span, carries the
// span's trace context to the handler in the call's metadata, and records
// the call in the client metrics (see the package documentation). It
// panics on a nil option.
func ClientInterceptor(opts ...Option) broker.Interceptor {
	c := newConfig(opts)
	s := newSide(c, "client", trace.SpanKindClient)
	return func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		return s.intercept(ctx, call, next)
	}
}

// ServerInterceptor returns an interceptor for broker.WithServerInterceptors
// that puts every call this side handles in a server span, a child of the
// caller's span when the call's metadata carries a trace context, and
// records the call in the server metrics (see the package documentation).
// It panics on a nil option.
func ServerInterceptor(opts ...Option) broker.Interceptor {
	c := newConfig(opts)
	s := newSide(c, "server", trace.SpanKindServer)
	return func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		if md, ok := broker.IncomingMetadata(ctx); ok {
			ctx = s.prop.Extract(ctx, propagation.MapCarrier(md))
		}
		return s.intercept(ctx, call, next)
	}
}

// side is one interceptor: its tracer, propagator and instruments.
type side struct {
	tracer  trace.Tracer
	prop    propagation.TextMapPropagator
	kind    trace.SpanKind
	kindOpt trace.SpanStartOption // trace.WithSpanKind(kind), made once
	inst    instruments
}

// newSide makes the interceptor of one side ("client" or "server").
func newSide(c config, name string, kind trace.SpanKind) *side {
	return &side{
		tracer:  c.tp.Tracer(ScopeName),
		prop:    c.prop,
		kind:    kind,
		kindOpt: trace.WithSpanKind(kind),
		inst:    newInstruments(c.mp.Meter(ScopeName), name),
	}
}

// intercept runs one call in a span, recording its metrics.
func (s *side) intercept(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
	service := serviceOf(call.Target)
	svc, mth := ServiceKey.String(service), MethodKey.String(call.Method)
	base := metric.WithAttributeSet(attribute.NewSet(system, svc, mth))
	start := time.Now()
	ctx, span := s.tracer.Start(ctx, service+"/"+call.Method, s.kindOpt, trace.WithAttributes(system, svc, mth))
	if span.IsRecording() {
		span.SetAttributes(s.callAttributes(call)...)
	}
	if s.kind == trace.SpanKindClient {
		ctx = inject(ctx, s.prop)
	}
	s.inst.active.Add(ctx, 1, base)
	err := next(ctx, call)
	s.inst.active.Add(ctx, -1, base)
	if s.kind == trace.SpanKindServer && errors.Is(err, broker.ErrUnknownMethod) {
		// A peer may name any method: one the target does not have is
		// _OTHER, as the conventions say, so that it cannot make a new
		// span name and metric series per name.
		mth = MethodKey.String(otherMethod)
		span.SetName(service + "/" + otherMethod)
		span.SetAttributes(mth, MethodOriginalKey.String(call.Method))
	}
	code := CodeKey.String(broker.CodeOf(err).String())
	all := metric.WithAttributeSet(attribute.NewSet(system, svc, mth, code))
	s.inst.duration.Record(ctx, time.Since(start).Seconds(), all)
	span.SetAttributes(code)
	if err != nil {
		s.inst.errors.Add(ctx, 1, all)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// serviceOf is the rpc.service of a call to target: the manager's registry
// name when known, else its Go type (known on the handler's side), else
// "unknown".
func serviceOf(target broker.Target) string {
	switch {
	case target.Name != "":
		return target.Name
	case target.Type != "":
		return target.Type
	}
	return "unknown"
}

// callAttributes are the span attributes of a call besides its labels:
// the peer's address and name, and the kind of a cache subscription.
func (s *side) callAttributes(call *broker.CallInfo) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if call.Kind != broker.CallMethod {
		attrs = append(attrs, KindKey.String(call.Kind.String()))
	}
	if call.Peer.Name != "" {
		attrs = append(attrs, PeerNameKey.String(call.Peer.Name))
	}
	if call.Peer.Addr == nil {
		return attrs
	}
	host, port, err := net.SplitHostPort(call.Peer.Addr.String())
	if err != nil {
		host, port = call.Peer.Addr.String(), ""
	}
	addrKey, portKey := attribute.Key("network.peer.address"), attribute.Key("network.peer.port")
	if s.kind == trace.SpanKindClient {
		addrKey, portKey = "server.address", "server.port"
	}
	attrs = append(attrs, addrKey.String(host))
	if p, err := strconv.Atoi(port); err == nil {
		attrs = append(attrs, portKey.Int(p))
	}
	return attrs
}

// inject returns ctx with the trace context of its span (and its baggage)
// added to the metadata of the calls made with it. A relay passing a call
// on sends the metadata it received too, under what is added here: this
// hop's span is the parent the next hop sees.
func inject(ctx context.Context, prop propagation.TextMapPropagator) context.Context {
	var kv pairs
	prop.Inject(ctx, &kv)
	if len(kv) == 0 {
		return ctx
	}
	return broker.AppendToOutgoing(ctx, kv...)
}

// pairs is a propagation.TextMapCarrier that only collects what a
// propagator injects, as key, value, key, value, ...: for
// broker.AppendToOutgoing, without a map of its own.
type pairs []string

// Get returns the last value set for key.
func (p *pairs) Get(key string) string {
	for i := len(*p) - 2; i >= 0; i -= 2 {
		if (*p)[i] == key {
			return (*p)[i+1]
		}
	}
	return ""
}

// Set adds key and value; AppendToOutgoing keeps the later of two values.
func (p *pairs) Set(key, value string) { *p = append(*p, key, value) }

// Keys returns the keys set, in order.
func (p *pairs) Keys() []string {
	keys := make([]string, 0, len(*p)/2)
	for i := 0; i < len(*p); i += 2 {
		keys = append(keys, (*p)[i])
	}
	return keys
}
