package tetherotel

import (
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Option configures ClientInterceptor and ServerInterceptor.
type Option interface{ apply(*config) }

// optionFunc is an Option made of a function.
type optionFunc func(*config)

// apply sets the option on c.
func (f optionFunc) apply(c *config) { f(c) }

// config is what the options chose.
type config struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider makes the interceptor start its spans with tp's
// tracer instead of the global provider's (otel.GetTracerProvider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = must("WithTracerProvider", tp) })
}

// WithMeterProvider makes the interceptor record its metrics with mp's
// meter instead of the global provider's (otel.GetMeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = must("WithMeterProvider", mp) })
}

// WithPropagators makes the interceptor carry the trace context in the
// call's metadata with p: the client interceptor injects it, the server
// interceptor extracts it. By default it uses the global propagator
// (otel.GetTextMapPropagator) when one was set before the interceptor was
// made, else W3C trace context and baggage. The metadata keys p writes
// must follow broker.Metadata's rules (lower-case ASCII): a call whose
// metadata breaks them fails with broker.ErrInvalidMetadata.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) { c.prop = must("WithPropagators", p) })
}

// must returns v, panicking when it is nil: a nil provider or propagator
// is a mistake in the program, found when the interceptor is made.
func must[T any](option string, v T) T {
	if any(v) == nil {
		panic(fmt.Sprintf("tetherotel.%s: nil: leave the option out to use the global one", option))
	}
	return v
}

// newConfig applies opts over the defaults.
func newConfig(opts []Option) config {
	var c config
	for i, o := range opts {
		if o == nil {
			panic(fmt.Sprintf("tetherotel: option %d is nil: remove it", i+1))
		}
		o.apply(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = defaultPropagator()
	}
	return c
}

// defaultPropagator is the global propagator when the program set one
// (the unset global has no fields and carries nothing), else W3C trace
// context and baggage.
func defaultPropagator() propagation.TextMapPropagator {
	if g := otel.GetTextMapPropagator(); len(g.Fields()) > 0 {
		return g
	}
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}
