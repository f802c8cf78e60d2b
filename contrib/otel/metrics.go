package tetherotel

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// instruments are the metrics of one side.
type instruments struct {
	duration metric.Float64Histogram
	errors   metric.Int64Counter
	active   metric.Int64UpDownCounter
}

// durationBuckets are the histogram's bucket bounds in seconds: those of
// the semantic conventions' rpc.*.call.duration, with finer ones below
// 5 ms, where a call on a local network lands.
var durationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
	0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// newInstruments makes the instruments of side ("client" or "server") on
// m. An instrument the meter refuses is reported to OTel's error handler
// (otel.Handle: logged, unless the program set another) and records
// nothing, as the API's instruments do: tracing and metrics never fail a
// call.
func newInstruments(m metric.Meter, side string) instruments {
	var in instruments
	var err error
	in.duration, err = m.Float64Histogram("rpc."+side+".call.duration",
		metric.WithDescription("Duration of the Tether calls this side "+made(side)+"."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...))
	handle(err)
	in.errors, err = m.Int64Counter("tether.rpc."+side+".errors",
		metric.WithDescription("Tether calls this side "+made(side)+" that failed."), metric.WithUnit("{call}"))
	handle(err)
	in.active, err = m.Int64UpDownCounter("tether.rpc."+side+".active_calls",
		metric.WithDescription("Tether calls this side "+made(side)+" that have not finished."), metric.WithUnit("{call}"))
	handle(err)
	// A meter that refused an instrument may have returned none.
	if in.duration == nil {
		in.duration = noop.Float64Histogram{}
	}
	if in.errors == nil {
		in.errors = noop.Int64Counter{}
	}
	if in.active == nil {
		in.active = noop.Int64UpDownCounter{}
	}
	return in
}

// made says what a side does with its calls, for descriptions.
func made(side string) string {
	if side == "client" {
		return "made"
	}
	return "handled"
}

// handle reports an error making an instrument.
func handle(err error) {
	if err != nil {
		otel.Handle(err)
	}
}
