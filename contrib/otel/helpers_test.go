package tetherotel_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	tetherotel "github.com/tether-go/tether/contrib/otel"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// echo is the manager the tests publish.
type echo struct {
	remoteable.Referenceable
	held    chan struct{} // Hold says it runs
	release chan struct{} // Hold returns when it is closed
	model   *cache.Map[string, string]
}

// newEcho returns an echo with a model holding one entry.
func newEcho() *echo {
	m := cache.NewMap[string, string]()
	if err := m.Set("greeting", "hello"); err != nil {
		panic(err)
	}
	return &echo{held: make(chan struct{}, 1), release: make(chan struct{}), model: m}
}

// Hold runs until release is closed or ctx ends.
func (e *echo) Hold(ctx context.Context) error {
	e.held <- struct{}{}
	select {
	case <-e.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Model returns the echo's model, which a caller mirrors.
func (e *echo) Model(ctx context.Context) (*cache.Map[string, string], error) { return e.model, nil }

// errNothing is what Fail returns: code NotFound.
var errNothing = broker.NewError(broker.NotFound, errors.New("echo: nothing here"))

func init() { remoteable.RegisterError("tetherotel.test.nothing", errNothing) }

// Echo returns s.
func (*echo) Echo(ctx context.Context, s string) (string, error) { return s, nil }

// Fail fails with a code of its own.
func (*echo) Fail(ctx context.Context) error { return errNothing }

// Callback calls Notify on the caller's listener with s and returns its
// answer: a call from the server back to the client.
func (*echo) Callback(ctx context.Context, l *broker.Ref, s string) (string, error) {
	return broker.Call[string](ctx, l, "Notify", s)
}

// listener is an object a client passes to the server.
type listener struct{ remoteable.Referenceable }

// Notify answers the server's callback.
func (*listener) Notify(ctx context.Context, s string) (string, error) { return "heard " + s, nil }

// telemetry is one process's OTel SDK: its spans land in a recorder and
// its metrics are read on demand.
type telemetry struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

// newTelemetry makes an SDK that samples every span.
func newTelemetry(t *testing.T) *telemetry {
	tel := &telemetry{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(tel.spans))
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	t.Cleanup(func() {
		require.NoError(t, tel.tp.Shutdown(context.Background()))
		require.NoError(t, tel.mp.Shutdown(context.Background()))
	})
	return tel
}

// options are the interceptor options that use this SDK.
func (tel *telemetry) options() []tetherotel.Option {
	return []tetherotel.Option{tetherotel.WithTracerProvider(tel.tp), tetherotel.WithMeterProvider(tel.mp)}
}

// both are broker options that put both interceptors on a connection.
func (tel *telemetry) both() []broker.Option {
	return []broker.Option{
		broker.WithClientInterceptors(tetherotel.ClientInterceptor(tel.options()...)),
		broker.WithServerInterceptors(tetherotel.ServerInterceptor(tel.options()...)),
	}
}

// ended returns the spans that ended with the given name.
func (tel *telemetry) ended(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range tel.spans.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// metrics collects the metrics recorded so far, by name.
func (tel *telemetry) metrics(t *testing.T) map[string]metricdata.Aggregation {
	var rm metricdata.ResourceMetrics
	require.NoError(t, tel.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// attr returns the value of key in set, or "".
func attr(set attribute.Set, key attribute.Key) string {
	v, _ := set.Value(key)
	return v.String()
}

// serve publishes a registry holding e under "echo" on loopback TCP, and
// returns its address.
func serve(t *testing.T, e *echo, opts ...broker.Option) string {
	reg := registry.New()
	require.NoError(t, reg.Register("echo", e))
	return serveRoot(t, reg, opts...)
}

// serveRoot serves root on loopback TCP until the test ends.
func serveRoot(t testing.TB, root any, opts ...broker.Option) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(root, opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when the server closes
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// connect makes a lasting client of addr, closed when the test ends.
func connect(t *testing.T, addr string, opts ...broker.Option) *remote.Client {
	cl, err := remote.Connect(testCtx(t), "tcp", addr, remote.WithBroker(opts...))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// testCtx is a context that ends with the test, or after 20 s.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
