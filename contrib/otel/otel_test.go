package tetherotel_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	tetherotel "github.com/tether-go/tether/contrib/otel"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/registry"
)

// only returns the one span of kind among spans, failing t otherwise.
func only(t *testing.T, spans []sdktrace.ReadOnlySpan, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanKind() == kind {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans of kind %v", kind)
	return found[0]
}

// spanAttr returns the value of key on span, or "".
func spanAttr(span sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, kv := range span.Attributes() {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// assertChain checks that spans form one trace, each the parent of the
// next, the first a root.
func assertChain(t *testing.T, spans ...sdktrace.ReadOnlySpan) {
	t.Helper()
	assert.False(t, spans[0].Parent().IsValid(), "%s is the root", spans[0].Name())
	for i := 1; i < len(spans); i++ {
		parent, child := spans[i-1], spans[i]
		assert.Equal(t, parent.SpanContext().TraceID(), child.SpanContext().TraceID(), "%s is in the trace", child.Name())
		assert.Equal(t, parent.SpanContext().SpanID(), child.Parent().SpanID(),
			"span %d (%s, %v) is the parent of span %d (%s, %v)", i-1, parent.Name(), parent.SpanKind(), i, child.Name(), child.SpanKind())
	}
}

func TestOneTraceFromClientThroughARelayToTheServer(t *testing.T) {
	leakcheck.Check(t)
	server, relay, client := newTelemetry(t), newTelemetry(t), newTelemetry(t)
	upstream := connect(t, serve(t, newEcho(), server.both()...), relay.both()...)
	relayAddr := serveRoot(t, registry.New(registry.WithUpstream(upstream.Registry())), relay.both()...)
	cl := connect(t, relayAddr, client.both()...)
	ctx := testCtx(t)

	e, err := cl.Registry().Lookup(ctx, "echo")
	require.NoError(t, err)
	var got string
	require.NoError(t, e.Call(ctx, "Echo", &got, "hi"))
	require.Equal(t, "hi", got)

	c := only(t, client.ended("echo/Echo"), trace.SpanKindClient)
	rs := only(t, relay.ended("echo/Echo"), trace.SpanKindServer)
	rc := only(t, relay.ended("echo/Echo"), trace.SpanKindClient)
	s := only(t, server.ended("echo/Echo"), trace.SpanKindServer)
	assertChain(t, c, rs, rc, s)
	for i, span := range []sdktrace.ReadOnlySpan{c, rs, rc, s} {
		t.Logf("%-6s %-6v %s trace=%s span=%s parent=%s %s=%s", []string{"client", "relay", "relay", "server"}[i], span.SpanKind(), span.Name(), span.SpanContext().TraceID(),
			span.SpanContext().SpanID(), span.Parent().SpanID(), tetherotel.CodeKey, spanAttr(span, tetherotel.CodeKey))
	}
	for _, span := range []sdktrace.ReadOnlySpan{c, rs, rc, s} {
		assert.Equal(t, "tether", spanAttr(span, tetherotel.SystemKey))
		assert.Equal(t, "echo", spanAttr(span, tetherotel.ServiceKey), "the manager's registry name on every hop")
		assert.Equal(t, "Echo", spanAttr(span, tetherotel.MethodKey))
		assert.Equal(t, "ok", spanAttr(span, tetherotel.CodeKey))
		assert.Equal(t, codes.Unset, span.Status().Code)
	}
	assert.Equal(t, "127.0.0.1", spanAttr(c, "server.address"))
	assert.NotEmpty(t, spanAttr(c, "server.port"))
	assert.Equal(t, "127.0.0.1", spanAttr(s, "network.peer.address"))
}

func TestACallbackFromTheServerIsInTheCallersTrace(t *testing.T) {
	leakcheck.Check(t)
	server, client := newTelemetry(t), newTelemetry(t)
	cl := connect(t, serve(t, newEcho(), server.both()...), client.both()...)
	ctx := testCtx(t)

	e, err := cl.Registry().Lookup(ctx, "echo")
	require.NoError(t, err)
	var got string
	require.NoError(t, e.Call(ctx, "Callback", &got, &listener{}, "ping"))
	require.Equal(t, "heard ping", got)

	c := only(t, client.ended("echo/Callback"), trace.SpanKindClient)
	s := only(t, server.ended("echo/Callback"), trace.SpanKindServer)
	// The server's reference to the listener was not looked up by name,
	// and its type is known only where it lives.
	sc := only(t, server.ended("unknown/Notify"), trace.SpanKindClient)
	cs := only(t, client.ended("*tetherotel_test.listener/Notify"), trace.SpanKindServer)
	assertChain(t, c, s, sc, cs)
}

func TestAFailedCallHasErrorStatusAndItsCode(t *testing.T) {
	leakcheck.Check(t)
	server, client := newTelemetry(t), newTelemetry(t)
	cl := connect(t, serve(t, newEcho(), server.both()...), client.both()...)
	ctx := testCtx(t)
	e, err := cl.Registry().Lookup(ctx, "echo")
	require.NoError(t, err)

	require.ErrorIs(t, e.Call(ctx, "Fail", nil), errNothing)
	for _, span := range []sdktrace.ReadOnlySpan{
		only(t, client.ended("echo/Fail"), trace.SpanKindClient),
		only(t, server.ended("echo/Fail"), trace.SpanKindServer),
	} {
		assert.Equal(t, codes.Error, span.Status().Code, span.SpanKind().String())
		assert.Contains(t, span.Status().Description, "echo: nothing here")
		assert.Equal(t, "not_found", spanAttr(span, tetherotel.CodeKey))
	}

	// A call refused before any handler ran is traced on both sides too.
	require.ErrorIs(t, e.Call(ctx, "Nope", nil), broker.ErrUnknownMethod)
	// The server names it _OTHER: a peer cannot make a span name (or a
	// metric series) per method name it makes up.
	s := only(t, server.ended("echo/_OTHER"), trace.SpanKindServer)
	assert.Equal(t, "unimplemented", spanAttr(s, tetherotel.CodeKey))
	assert.Equal(t, "_OTHER", spanAttr(s, tetherotel.MethodKey))
	assert.Equal(t, "Nope", spanAttr(s, tetherotel.MethodOriginalKey))
	assert.Equal(t, codes.Error, s.Status().Code)
	only(t, client.ended("echo/Nope"), trace.SpanKindClient)
	m := server.metrics(t)
	assert.Equal(t, int64(1), sumValue(t, m["tether.rpc.server.errors"].(metricdata.Sum[int64]), "_OTHER", "unimplemented"))
}

// matches reports whether a data point's attributes are those of a call
// of echo's method ending with code (any code when code is "").
func matches(set attribute.Set, method, code string) bool {
	return attr(set, tetherotel.SystemKey) == "tether" && attr(set, tetherotel.ServiceKey) == "echo" &&
		attr(set, tetherotel.MethodKey) == method && (code == "" || attr(set, tetherotel.CodeKey) == code)
}

// histPoint returns the histogram's data point for echo's method and code.
func histPoint(t *testing.T, h metricdata.Histogram[float64], method, code string) metricdata.HistogramDataPoint[float64] {
	t.Helper()
	for _, p := range h.DataPoints {
		if matches(p.Attributes, method, code) {
			return p
		}
	}
	t.Fatalf("no data point for echo/%s %s among %d", method, code, len(h.DataPoints))
	return metricdata.HistogramDataPoint[float64]{}
}

// sumValue returns the sum's value for echo's method and code.
func sumValue(t *testing.T, s metricdata.Sum[int64], method, code string) int64 {
	t.Helper()
	for _, p := range s.DataPoints {
		if matches(p.Attributes, method, code) {
			return p.Value
		}
	}
	t.Fatalf("no data point for echo/%s %s among %d", method, code, len(s.DataPoints))
	return 0
}

func TestMetricsCountCallsPerMethodAndCode(t *testing.T) {
	leakcheck.Check(t)
	server, client := newTelemetry(t), newTelemetry(t)
	ec := newEcho()
	cl := connect(t, serve(t, ec, server.both()...), client.both()...)
	ctx := testCtx(t)
	e, err := cl.Registry().Lookup(ctx, "echo")
	require.NoError(t, err)
	require.NoError(t, e.Call(ctx, "Echo", nil, "a"))
	require.NoError(t, e.Call(ctx, "Echo", nil, "b"))
	require.Error(t, e.Call(ctx, "Fail", nil))

	held := make(chan error, 1)
	go func() { held <- e.Call(ctx, "Hold", nil) }()
	<-ec.held
	for _, side := range []struct {
		tel  *telemetry
		name string
	}{{server, "server"}, {client, "client"}} {
		m := side.tel.metrics(t)
		dur, ok := m["rpc."+side.name+".call.duration"].(metricdata.Histogram[float64])
		require.True(t, ok, side.name)
		assert.Equal(t, uint64(2), histPoint(t, dur, "Echo", "ok").Count, side.name)
		assert.Equal(t, uint64(1), histPoint(t, dur, "Fail", "not_found").Count, side.name)
		errs, ok := m["tether.rpc."+side.name+".errors"].(metricdata.Sum[int64])
		require.True(t, ok, side.name)
		assert.Equal(t, int64(1), sumValue(t, errs, "Fail", "not_found"), side.name)
		for _, p := range errs.DataPoints {
			assert.NotEqual(t, "Echo", attr(p.Attributes, tetherotel.MethodKey), "Echo did not fail")
		}
		active, ok := m["tether.rpc."+side.name+".active_calls"].(metricdata.Sum[int64])
		require.True(t, ok, side.name)
		assert.Equal(t, int64(1), sumValue(t, active, "Hold", ""), "%s: Hold is running", side.name)
		assert.Equal(t, int64(0), sumValue(t, active, "Echo", ""), "%s: the Echo calls are over", side.name)
	}
	close(ec.release)
	require.NoError(t, <-held)
	m := server.metrics(t)
	assert.Equal(t, int64(0), sumValue(t, m["tether.rpc.server.active_calls"].(metricdata.Sum[int64]), "Hold", ""))
}

func TestCacheSubscriptionsHaveSpans(t *testing.T) {
	leakcheck.Check(t)
	server, client := newTelemetry(t), newTelemetry(t)
	cl := connect(t, serve(t, newEcho(), server.both()...), client.both()...)
	ctx := testCtx(t)
	e, err := cl.Registry().Lookup(ctx, "echo")
	require.NoError(t, err)
	var mir *cache.Mirror[string, string]
	require.NoError(t, e.Call(ctx, "Model", &mir))
	v, ok := mir.Get("greeting")
	require.True(t, ok)
	require.Equal(t, "hello", v)

	for _, tel := range []*telemetry{client, server} {
		var kinds []string
		for _, s := range tel.spans.Ended() {
			if k := spanAttr(s, tetherotel.KindKey); k != "" {
				kinds = append(kinds, k+" "+spanAttr(s, tetherotel.MethodKey))
			}
		}
		assert.Contains(t, kinds, "subscribe Subscribe")
	}
}

func TestANilOptionPanics(t *testing.T) {
	assert.PanicsWithValue(t, "tetherotel.WithTracerProvider: nil: leave the option out to use the global one", func() {
		tetherotel.ClientInterceptor(tetherotel.WithTracerProvider(nil))
	})
	assert.Panics(t, func() { tetherotel.ServerInterceptor(nil) })
}
