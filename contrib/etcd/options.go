package etcd

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/tether-go/tether/broker"
)

// DefaultTTL is how long an announcement outlives its process (or its link
// to etcd) when WithTTL is not given.
const DefaultTTL = 10 * time.Second

// Option configures Announce and NewResolver.
type Option interface{ apply(*options) }

// options are what the Options set, defaults first.
type options struct {
	ttl     time.Duration
	logger  *slog.Logger
	timeout time.Duration
}

// optionFunc makes a function an Option.
type optionFunc func(*options)

// apply runs the function.
func (f optionFunc) apply(o *options) { f(o) }

// WithTTL sets the lease of an announcement: etcd deletes the key this long
// after the announcing process last renewed it. It is rounded up to whole
// seconds, etcd's unit; the default is DefaultTTL. A resolver ignores it.
func WithTTL(d time.Duration) Option { return optionFunc(func(o *options) { o.ttl = d }) }

// WithLogger sets where an announcement logs a lapsed lease and a resolver
// a broken watch or a bad entry (slog.Default() by default).
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithRequestTimeout bounds each request to etcd made in the background:
// an announcement's new lease after a lapse, a resolver's read of the
// prefix (5 s by default).
func WithRequestTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.timeout = d })
}

// buildOptions applies opts over the defaults and checks them.
func buildOptions(opts []Option) (*options, error) {
	o := &options{ttl: DefaultTTL, logger: slog.Default(), timeout: 5 * time.Second}
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: a nil etcd.Option", broker.ErrInvalidOption)
		}
		opt.apply(o)
	}
	if o.ttl <= 0 {
		return nil, fmt.Errorf("%w: etcd.WithTTL(%v): give a positive duration", broker.ErrInvalidOption, o.ttl)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("%w: etcd.WithRequestTimeout(%v): give a positive duration", broker.ErrInvalidOption, o.timeout)
	}
	if o.logger == nil {
		return nil, fmt.Errorf("%w: etcd.WithLogger(nil): give a logger, or leave the option out for slog.Default()", broker.ErrInvalidOption)
	}
	return o, nil
}

// ttlSeconds is the TTL in whole seconds, rounded up, as etcd takes it.
func (o *options) ttlSeconds() int64 {
	return int64((o.ttl + time.Second - 1) / time.Second)
}
