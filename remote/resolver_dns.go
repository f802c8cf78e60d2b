package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-go/tether/broker"
)

// DNSResolver names the servers a DNS name lists: the targets of its SRV
// records, or the addresses (A and AAAA) of a host with a fixed port. It
// looks again on a timer (WithRefresh), sooner after a failed lookup, and
// when a client asks it to because every server it named failed
// (ResolveNow). One DNSResolver may serve any number of clients and pools.
type DNSResolver struct {
	name    string // an SRV name, or a host
	port    string // the port with a host; empty for an SRV name
	net     *net.Resolver
	refresh time.Duration

	mu   sync.Mutex
	kick chan struct{} // closed and replaced by ResolveNow
}

var _ Resolver = (*DNSResolver)(nil)

// DNSOption configures DNS.
type DNSOption interface{ applyDNS(*DNSResolver) }

// dnsOptionFunc is a DNSOption made of a function.
type dnsOptionFunc func(*DNSResolver)

// applyDNS implements DNSOption.
func (f dnsOptionFunc) applyDNS(d *DNSResolver) { f(d) }

// WithNetResolver makes DNS look names up through r instead of
// net.DefaultResolver (to ask a given server, or a test's).
func WithNetResolver(r *net.Resolver) DNSOption {
	return dnsOptionFunc(func(d *DNSResolver) { d.net = r })
}

// WithRefresh sets how often DNS looks the name up again (default 30 s).
func WithRefresh(every time.Duration) DNSOption {
	return dnsOptionFunc(func(d *DNSResolver) { d.refresh = every })
}

// DNS returns a resolver for name, which is either "host:port", whose
// endpoints are the host's addresses (A and AAAA) with that port, or an
// SRV name such as "_tether._tcp.example.com", whose endpoints are its
// targets' addresses with their ports, ordered by priority; an SRV
// endpoint's Attrs hold its "target", "priority" and "weight". A target
// DNS says does not exist is left out, unless none exists (a failed
// lookup); any other failure to resolve a target fails the lookup. Endpoints
// have the network "tcp" and an ID of their own address. A name that is
// neither, or a refresh period that is not positive, is an error matching
// broker.ErrInvalidOption, which Resolve returns.
func DNS(name string, opts ...DNSOption) *DNSResolver {
	d := &DNSResolver{name: name, net: net.DefaultResolver, refresh: 30 * time.Second, kick: make(chan struct{})}
	if host, port, err := net.SplitHostPort(name); err == nil {
		d.name, d.port = host, port
	}
	for _, o := range opts {
		if o != nil {
			o.applyDNS(d)
		}
	}
	return d
}

// check reports a name or option DNS cannot work with.
func (d *DNSResolver) check() error {
	switch {
	case d.name == "":
		return fmt.Errorf("%w: remote.DNS: give \"host:port\" or an SRV name", broker.ErrInvalidOption)
	case d.port == "" && !strings.HasPrefix(d.name, "_"):
		return fmt.Errorf("%w: remote.DNS(%q): give \"host:port\", or an SRV name (\"_service._tcp.domain\")", broker.ErrInvalidOption, d.name)
	case d.refresh <= 0:
		return fmt.Errorf("%w: remote.WithRefresh(%v): give a positive period", broker.ErrInvalidOption, d.refresh)
	case d.net == nil:
		return fmt.Errorf("%w: remote.WithNetResolver(nil): give a resolver, or leave the option out", broker.ErrInvalidOption)
	}
	return nil
}

// ResolveNow makes every Resolve under way look the name up again now,
// instead of at its next refresh: a Client calls it after a pass in which
// every server failed, since the servers may have moved.
func (d *DNSResolver) ResolveNow() {
	d.mu.Lock()
	defer d.mu.Unlock()
	close(d.kick)
	d.kick = make(chan struct{})
}

// dnsRetry is the first wait after a failed lookup; it doubles with each
// further failure, up to the refresh period.
const dnsRetry = 500 * time.Millisecond

// Resolve implements Resolver: it looks the name up now and again every
// refresh period, after ResolveNow, and after a failure sooner (from half
// a second, doubling), pushing the set whenever it changed.
func (d *DNSResolver) Resolve(ctx context.Context, update func([]Endpoint, error)) error {
	if err := d.check(); err != nil {
		return err
	}
	var last []Endpoint
	known := false
	retry := dnsRetry
	for {
		d.mu.Lock()
		kick := d.kick
		d.mu.Unlock()
		eps, err := d.lookup(ctx)
		wait := d.refresh
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			update(nil, fmt.Errorf("%w: looking up %s: %w", ErrResolver, d.name, err))
			wait, retry = min(retry, d.refresh), min(retry*2, d.refresh)
			known = false // the next success is pushed, to clear the error
		default:
			retry = dnsRetry
			if !known || !sameServers(last, eps) {
				update(eps, nil)
				last, known = eps, true
			}
		}
		if !d.pause(ctx, wait, kick) {
			return ctx.Err()
		}
	}
}

// pause waits d, or until kick closes, reporting false if ctx ended first.
func (d *DNSResolver) pause(ctx context.Context, wait time.Duration, kick chan struct{}) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-kick:
	case <-ctx.Done():
		return false
	}
	return true
}

// lookup asks DNS for the current set, sorted so that a set that did not
// change compares equal to the last one.
func (d *DNSResolver) lookup(ctx context.Context) ([]Endpoint, error) {
	if d.port != "" {
		return d.lookupHost(ctx, d.name, d.port, nil)
	}
	_, srvs, err := d.net.LookupSRV(ctx, "", "", d.name)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(srvs, func(a, b *net.SRV) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(b.Weight, a.Weight), cmp.Compare(a.Target, b.Target))
	})
	var eps []Endpoint
	var missing error
	for _, s := range srvs {
		attrs := map[string]string{
			"target":   s.Target,
			"priority": strconv.Itoa(int(s.Priority)),
			"weight":   strconv.Itoa(int(s.Weight)),
		}
		more, err := d.lookupHost(ctx, s.Target, strconv.Itoa(int(s.Port)), attrs)
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			// DNS says the target has no address (a host taken away before
			// its SRV record): it is no server, and the others still are.
			// Any other failure may be passing, so it fails the lookup
			// rather than shrink the set.
			missing = fmt.Errorf("SRV target %s: %w", s.Target, err)
		case err != nil:
			return nil, fmt.Errorf("SRV target %s: %w", s.Target, err)
		}
		eps = append(eps, more...)
	}
	if len(eps) == 0 && missing != nil {
		return nil, missing
	}
	return eps, nil
}

// lookupHost returns an endpoint for each of host's addresses, with port.
func (d *DNSResolver) lookupHost(ctx context.Context, host, port string, attrs map[string]string) ([]Endpoint, error) {
	addrs, err := d.net.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	slices.Sort(addrs)
	eps := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		addr := net.JoinHostPort(a, port)
		eps[i] = Endpoint{Network: "tcp", Addr: addr, ID: "tcp://" + addr, Attrs: attrs}
	}
	return eps, nil
}
