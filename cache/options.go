package cache

import "github.com/tether-go/tether/internal/feed"

// Option configures a model (NewMap, NewValue). A mirror made by the
// broker uses the defaults.
type Option interface{ apply(*options) }

type options struct {
	logSize   int
	queueSize int
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// DefaultQueueSize is how many undelivered Changed events a model or mirror
// keeps for its slow watchers before it coalesces them.
const DefaultQueueSize = 1024

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

// WithLogSize sets how many recent changes a model keeps so that a mirror coming back from an
// outage gets only what it missed. A mirror further behind gets a snapshot.
// Zero or less means the default, 4096.
func WithLogSize(n int) Option { return optionFunc(func(o *options) { o.logSize = n }) }

// WithQueueSize sets how many Changed events may wait for slow watchers.
// Beyond that the waiting events are dropped and, once the watchers catch
// up, replaced by one event per entry that differs from what they last saw.
// Zero or less means the default, DefaultQueueSize.
func WithQueueSize(n int) Option { return optionFunc(func(o *options) { o.queueSize = n }) }
