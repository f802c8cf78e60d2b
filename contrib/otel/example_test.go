package tetherotel_test

import (
	"context"
	"fmt"
	"net"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tether-go/tether/broker"
	tetherotel "github.com/tether-go/tether/contrib/otel"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Greeter is the manager the example publishes.
type Greeter struct{ remoteable.Referenceable }

// Hello greets name.
func (*Greeter) Hello(ctx context.Context, name string) (string, error) { return "hello, " + name, nil }

// A server and a client, each with both interceptors: the client's span
// and the server's are one trace, the server's a child of the client's.
func Example() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	otelOpts := []broker.Option{
		broker.WithClientInterceptors(tetherotel.ClientInterceptor(tetherotel.WithTracerProvider(tp))),
		broker.WithServerInterceptors(tetherotel.ServerInterceptor(tetherotel.WithTracerProvider(tp))),
	}

	reg := registry.New()
	if err := reg.Register("greeter", &Greeter{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(reg, otelOpts...)
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	cl, err := remote.Connect(ctx, "tcp", ln.Addr().String(), remote.WithBroker(otelOpts...))
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	g, err := cl.Registry().Lookup(ctx, "greeter")
	if err != nil {
		panic(err)
	}
	fmt.Println(broker.Call[string](ctx, g, "Hello", "world"))

	var client, server sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		switch s.Name() + " " + s.SpanKind().String() {
		case "greeter/Hello client":
			client = s
		case "greeter/Hello server":
			server = s
		}
	}
	fmt.Print(client.Name(), " ", client.SpanKind(), ":")
	for _, kv := range client.Attributes() {
		if strings.HasPrefix(string(kv.Key), "rpc.") {
			fmt.Printf(" %s=%s", kv.Key, kv.Value.String())
		}
	}
	fmt.Println()
	fmt.Println(server.Name(), server.SpanKind(), "child of the client's span:",
		server.Parent().SpanID() == client.SpanContext().SpanID() && server.SpanContext().TraceID() == client.SpanContext().TraceID())
	// Output:
	// hello, world <nil>
	// greeter/Hello client: rpc.system=tether rpc.service=greeter rpc.method=Hello rpc.response.status_code=ok
	// greeter/Hello server child of the client's span: true
}
