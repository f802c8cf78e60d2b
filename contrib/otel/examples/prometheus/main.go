// Command prometheus shows Tether's OpenTelemetry metrics on a Prometheus
// /metrics page: a server and a client in one process, both with the
// tetherotel interceptors, record into an OTel meter provider whose reader
// is the OTel Prometheus exporter; the program makes a few calls, fetches
// its own /metrics and prints the lines about Tether calls (histogram
// buckets left out).
//
//	go run ./examples/prometheus
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tether-go/tether/broker"
	tetherotel "github.com/tether-go/tether/contrib/otel"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// main runs the demo, failing loudly.
func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// greeter is the manager the server publishes.
type greeter struct{ remoteable.Referenceable }

// errUnknown is what Greet answers for nobody: code NotFound.
var errUnknown = broker.NewError(broker.NotFound, errors.New("greeter: who?"))

// init registers errUnknown, so that the caller can tell it with errors.Is.
func init() { remoteable.RegisterError("example.greeter.unknown", errUnknown) }

// Greet greets name.
func (*greeter) Greet(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", errUnknown
	}
	return "hello, " + name, nil
}

// run serves /metrics and a greeter, makes calls, and prints the metrics
// about them to w.
func run(ctx context.Context, w io.Writer) error {
	reg := promclient.NewRegistry()
	// Without the scope's labels (otel_scope_name=...), for short lines.
	exporter, err := prometheus.New(prometheus.WithRegisterer(reg), prometheus.WithoutScopeInfo())
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer func() { _ = mp.Shutdown(context.Background()) }()
	metricsURL, stopHTTP, err := serveMetrics(reg)
	if err != nil {
		return err
	}
	defer stopHTTP()

	otelOpts := []broker.Option{
		broker.WithServerInterceptors(tetherotel.ServerInterceptor(tetherotel.WithMeterProvider(mp))),
		broker.WithClientInterceptors(tetherotel.ClientInterceptor(tetherotel.WithMeterProvider(mp))),
	}
	addr, stopServer, err := serveGreeter(otelOpts)
	if err != nil {
		return err
	}
	defer stopServer()
	if err := makeCalls(ctx, addr, otelOpts); err != nil {
		return err
	}
	return printMetrics(ctx, w, metricsURL)
}

// serveMetrics serves reg on /metrics on loopback and returns the page's
// URL and a function that stops serving it.
func serveMetrics(reg *promclient.Registry) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return "http://" + ln.Addr().String() + "/metrics", func() { srv.Close(); <-done }, nil
}

// serveGreeter publishes a greeter under "greeter" on loopback and returns
// its address and a function that stops the server.
func serveGreeter(opts []broker.Option) (string, func(), error) {
	reg := registry.New()
	if err := reg.Register("greeter", &greeter{}); err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := broker.NewServer(reg, opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when the server closes
	}()
	return ln.Addr().String(), func() { srv.Close(); <-done }, nil
}

// makeCalls greets five people and nobody (which fails).
func makeCalls(ctx context.Context, addr string, opts []broker.Option) error {
	cl, err := remote.Connect(ctx, "tcp", addr, remote.WithBroker(opts...))
	if err != nil {
		return err
	}
	defer cl.Close()
	g, err := cl.Registry().Lookup(ctx, "greeter")
	if err != nil {
		return err
	}
	for _, name := range []string{"ada", "alan", "grace", "edsger", "barbara"} {
		if _, err := broker.Call[string](ctx, g, "Greet", name); err != nil {
			return err
		}
	}
	if _, err := broker.Call[string](ctx, g, "Greet", ""); !errors.Is(err, errUnknown) {
		return fmt.Errorf("greeting nobody: got %v, want %v", err, errUnknown)
	}
	return nil
}

// printMetrics fetches url and prints the lines about Tether calls,
// leaving out histogram buckets and the greeter's registry lookups.
func printMetrics(ctx context.Context, w io.Writer, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Close = true // no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	fmt.Fprintf(w, "GET %s (the lines about Tether calls, without histogram buckets):\n", url)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if shown(line) {
			fmt.Fprintln(w, line)
		}
	}
	return sc.Err()
}

// shown reports whether a /metrics line is one to print.
func shown(line string) bool {
	name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE ")
	if !strings.HasPrefix(name, "rpc_") && !strings.HasPrefix(name, "tether_") {
		return false
	}
	return !strings.Contains(line, "_bucket{") && !strings.Contains(line, `rpc_method="Lookup"`)
}
