package tetherotel_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tether-go/tether/broker"
	tetherotel "github.com/tether-go/tether/contrib/otel"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// bytesEcho echoes byte slices, as the broker's own benchmark does.
type bytesEcho struct{ remoteable.Referenceable }

// Echo returns b.
func (*bytesEcho) Echo(b []byte) ([]byte, error) { return b, nil }

// nopExporter drops the spans the batcher hands it: the cost measured is
// the instrumentation's and the SDK's, not an exporter's.
type nopExporter struct{}

// ExportSpans drops spans.
func (nopExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }

// Shutdown does nothing.
func (nopExporter) Shutdown(context.Context) error { return nil }

// BenchmarkEcho64 is one caller echoing 64 bytes over loopback TCP to a
// manager it looked up by name: without interceptors, then with both OTel
// interceptors on both sides and an SDK that samples every span (batched
// to an exporter that drops them) or none; metrics are recorded in both.
func BenchmarkEcho64(b *testing.B) {
	b.Run("none", func(b *testing.B) { runEcho64(b, nil) })
	b.Run("sampled", func(b *testing.B) { runEcho64(b, sdktrace.AlwaysSample()) })
	b.Run("unsampled", func(b *testing.B) { runEcho64(b, sdktrace.NeverSample()) })
}

// runEcho64 measures the echo with interceptors using sampler, or with
// none when sampler is nil.
func runEcho64(b *testing.B, sampler sdktrace.Sampler) {
	var opts []broker.Option
	if sampler != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(nopExporter{}))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		o := []tetherotel.Option{tetherotel.WithTracerProvider(tp), tetherotel.WithMeterProvider(mp)}
		opts = []broker.Option{
			broker.WithClientInterceptors(tetherotel.ClientInterceptor(o...)),
			broker.WithServerInterceptors(tetherotel.ServerInterceptor(o...)),
		}
	}
	reg := registry.New()
	require.NoError(b, reg.Register("echo", &bytesEcho{}))
	addr := serveRoot(b, reg, opts...)
	ctx := context.Background()
	c, err := broker.Dial(ctx, "tcp", addr, opts...)
	require.NoError(b, err)
	b.Cleanup(func() { c.Close(); <-c.Done() })
	e, err := broker.Call[*broker.Ref](ctx, c.Root(), "Lookup", "echo")
	require.NoError(b, err)
	payload, out := make([]byte, 64), []byte(nil)
	b.ReportAllocs()
	b.SetBytes(64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.Call(ctx, "Echo", &out, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
