package cache

import "github.com/tether-go/tether/internal/feed"

// Option configures a model (NewMap, NewValue) or a mirror (NewMirror,
// NewValueMirror). A mirror the broker makes (a nil *Mirror given as the
// reply, a handler's parameter) uses the defaults.
type Option interface{ apply(*options) }

// options are a model's or mirror's settings, every one set (buildOptions).
type options struct {
	logSize   int
	queueSize int
}

// optionFunc is an Option that is a function.
type optionFunc func(*options)

// apply implements Option.
func (f optionFunc) apply(o *options) { f(o) }

// DefaultQueueSize is how many undelivered Changed events may wait for a
// model's or mirror's watchers before what comes next is merged
// (Change.Merged). It is the default log size too: watchers may fall as far
// behind their model or mirror as a mirror may fall behind its model
// before either gets the differences instead of every change, and it holds
// two of the largest batches a mirror applies at once.
const DefaultQueueSize = 4096

// buildOptions applies opts over the defaults.
func buildOptions(opts []Option) options {
	o := options{logSize: feed.DefaultLogSize, queueSize: DefaultQueueSize}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.logSize <= 0 {
		o.logSize = feed.DefaultLogSize
	}
	if o.queueSize <= 0 {
		o.queueSize = DefaultQueueSize
	}
	return o
}

// WithLogSize sets how many recent changes a model keeps so that a mirror
// coming back from an outage gets only what it missed. A mirror further
// behind gets a snapshot. Given to NewMirror, it sizes the mirror's own
// log, which serves the mirrors downstream of it. Zero or less means the
// default, 4096.
func WithLogSize(n int) Option { return optionFunc(func(o *options) { o.logSize = n }) }

// WithQueueSize sets how many Changed events may wait for the watchers of
// a model or mirror before they count as fallen behind. The bound is
// checked once per step: a change of a local model, or a batch of changes
// a mirror applies at once (which may hold more than n). A step that comes
// while fewer than n events wait is queued whole, so watchers that keep up
// see every change; one that comes while n or more wait is merged: the
// waiting events and those that follow are dropped and, once the watchers
// catch up, replaced by one event per entry that differs from what they
// last saw, marked Merged, and counted by MergedChanges. Zero or less
// means the default, DefaultQueueSize.
func WithQueueSize(n int) Option { return optionFunc(func(o *options) { o.queueSize = n }) }
