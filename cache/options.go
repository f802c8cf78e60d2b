package cache

// Option configures a model (NewMap, NewValue) or a mirror (NewMirror,
// NewValueMirror). A mirror the broker makes (a nil *Mirror given as the
// reply, a handler's parameter) uses the defaults.
type Option interface{ apply(*options) }

// options are a model's or mirror's settings, every one set (buildOptions)
// but logSize, which is 0 for the default log (feed.New's bounds).
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
// (Change.Merged). It holds two of the largest batches a mirror applies at
// once (2,048 changes), so the watchers of a mirror that keep up see every
// change however large the burst its model made: how far a mirror itself
// may fall behind its model is the log's bound (WithLogSize), not this
// one. Unlike the log, the queue is each model's and mirror's own, and
// holds the events' typed keys and values.
const DefaultQueueSize = 4096

// buildOptions applies opts over the defaults.
func buildOptions(opts []Option) options {
	o := options{queueSize: DefaultQueueSize}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.logSize <= 0 {
		o.logSize = 0 // the default log: feed.New's count and byte bounds
	}
	if o.queueSize <= 0 {
		o.queueSize = DefaultQueueSize
	}
	return o
}

// WithLogSize sets how many recent changes a model keeps so that a mirror
// that fell behind (a burst of changes faster than its link, an outage)
// gets every change it missed. A mirror further behind gets a snapshot,
// whose differences its watchers see as Merged events. Given to
// NewMirror, it sizes the mirror's own log, which serves the mirrors
// downstream of it and is kept from the time the mirror is first passed
// on (a mirror nobody follows logs nothing).
//
// Zero or less means the default: the last 32,768 changes, fewer when
// they take more than 8 MiB (their keys and values, plus about 128 bytes
// each), enough for a mirror to stay on a burst of 20,000 Sets made as
// fast as a local writer can. The log is the model's, shared by all its
// mirrors (each subscription is only a cursor into it), so its memory does
// not grow with their number. A size given here is kept whatever the
// size of the changes.
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
