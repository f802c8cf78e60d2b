package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/tether-go/tether/broker"
)

// ConnectAny returns a Client that holds one link at a time to one of the
// servers r names, and starts dialing in the background. The first pass
// starts at a random endpoint, so that clients spread over the fleet; when
// the link ends, the client fails over: it tries the other endpoints in
// turn, the one it lost last. The backoff (WithBackoff) applies to full
// passes: a pass in which every endpoint failed counts as one failed
// attempt, and a refusal (see Refused) only when every endpoint refused.
//
// Everything a Client promises holds across a failover as across a
// reconnect: a *Ref obtains its target on the new server by name, or by
// replaying the idempotent call that returned it; a mirror resumes, and
// since the new server's model has another epoch it gets a snapshot;
// Connected and Disconnected fire once per transition; a call that may
// have reached the old server is not repeated unless declared idempotent.
// Endpoint tells which server the link goes to.
//
// A link to a server that r stops naming is kept until it ends; a changed
// set ends a backoff at once. ConnectAny fails only on bad options (a
// Static resolver's endpoint without an address included); ctx is not used
// after it returns.
func ConnectAny(ctx context.Context, r Resolver, opts ...Option) (*Client, error) {
	o, err := resolverOptions(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	cl := newClient(o, r)
	cl.resolved = make(chan struct{})
	go cl.follow()
	go cl.run()
	return cl, nil
}

// checkResolver fails on a nil resolver, a Static one naming an endpoint
// without an address, and a DNS one with a bad name or option: mistakes
// better reported at once.
func checkResolver(r Resolver) error {
	if r == nil {
		return fmt.Errorf("%w: no resolver: give remote.Static(endpoints...) or remote.DNS(name)", broker.ErrInvalidOption)
	}
	switch r := r.(type) {
	case *StaticResolver:
		r.mu.Lock()
		defer r.mu.Unlock()
		_, err := normalize(r.eps)
		return err
	case *DNSResolver:
		return r.check()
	}
	return nil
}

// Endpoint returns the server the client's link goes to, and true; or the
// zero Endpoint and false while the client is not Connected.
func (cl *Client) Endpoint() (Endpoint, bool) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.state != Connected {
		return Endpoint{}, false
	}
	return cl.endpoint, true
}

// follow runs the resolver until Close, recording each set it names.
func (cl *Client) follow() {
	defer close(cl.resolved)
	err := cl.resolver.Resolve(cl.ctx, cl.eps.set)
	if cl.ctx.Err() != nil {
		return
	}
	// The resolver gave up: the client keeps its last set, and says why.
	if err == nil {
		err = errors.New("it returned before the client was closed")
	}
	cl.eps.set(nil, fmt.Errorf("%w: the resolver stopped: %w", ErrResolver, err))
}

// dialPass tries the endpoints one after another until one answers: the
// one after the last link's first, that one last. It fails when every
// endpoint failed, with each one's failure.
func (cl *Client) dialPass() (*broker.Conn, error) {
	order, err := cl.passOrder()
	if err != nil {
		return nil, err
	}
	cl.log.connecting(cl.serverName())
	fails := make([]error, 0, len(order))
	for _, ep := range order {
		conn, err := cl.dial(ep)
		if err == nil {
			cl.mu.Lock()
			cl.endpoint = ep
			cl.mu.Unlock()
			return conn, nil
		}
		if cl.ctx.Err() != nil {
			return nil, err
		}
		fails = append(fails, err)
	}
	if rn, ok := cl.resolver.(interface{ ResolveNow() }); ok {
		rn.ResolveNow() // every server failed: they may have moved
	}
	return nil, passFailed(order, fails)
}

// passOrder returns the endpoints in the order a pass tries them, once the
// resolver has named a set; it fails with ErrNoEndpoints on an empty one.
func (cl *Client) passOrder() ([]Endpoint, error) {
	v, ok := cl.eps.wait(cl.ctx)
	if !ok {
		return nil, broker.ErrClosed
	}
	cl.seen = v.changed
	eps := v.eps
	if len(eps) == 0 {
		if v.err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoEndpoints, v.err)
		}
		return nil, ErrNoEndpoints
	}
	if len(eps) == 1 {
		return eps, nil
	}
	cl.mu.Lock()
	last := cl.endpoint.ID
	cl.mu.Unlock()
	start := slices.IndexFunc(eps, func(e Endpoint) bool { return e.ID == last }) + 1
	if start == 0 {
		// No link yet, or its server left the set: start anywhere, so that
		// clients following the same resolver spread over the fleet.
		start = int(cl.opts.rand() * float64(len(eps)))
	}
	start %= len(eps)
	return append(eps[start:], eps[:start]...), nil
}

// where names what the client dials, for an error message: the address,
// or the servers the resolver names.
func (cl *Client) where() string {
	eps, rerr := cl.eps.get()
	switch {
	case cl.resolver == nil && len(eps) == 1:
		return eps[0].Addr
	case len(eps) == 0 && rerr != nil:
		return fmt.Sprintf("any server (the resolver names none: %v)", rerr)
	case len(eps) == 0:
		return "any server (the resolver names none)"
	}
	return "any of " + endpointList(eps)
}

// passError is the failure of a dial pass over several endpoints: each
// endpoint's error, which errors.Is and errors.As see through.
type passError struct {
	eps   []Endpoint
	fails []error
}

// passFailed returns the error of a failed pass: the one failure when
// there was one endpoint, so that Connect's errors read as before.
func passFailed(eps []Endpoint, fails []error) error {
	if len(fails) == 1 {
		return fails[0]
	}
	return &passError{eps: eps, fails: fails}
}

// Error names each endpoint with its failure.
func (e *passError) Error() string {
	parts := make([]string, len(e.fails))
	for i, err := range e.fails {
		parts[i] = fmt.Sprintf("%s: %v", e.eps[i], err)
	}
	return fmt.Sprintf("tether: all %d servers failed: %s", len(e.fails), strings.Join(parts, "; "))
}

// Unwrap returns every endpoint's failure, for errors.Is and errors.As.
func (e *passError) Unwrap() []error { return e.fails }

// refusedByAll reports whether every endpoint of a failed pass refused the
// client: only then is the client Refused, since another server of the
// pass may just be down.
func refusedByAll(err error) bool {
	if pe, ok := err.(*passError); ok {
		for _, f := range pe.fails {
			if !isRefusal(f) {
				return false
			}
		}
		return true
	}
	return isRefusal(err)
}

// endpointSet is the set of servers a client dials, as its resolver last
// named it, guarded by its own lock (the resolver's goroutine sets it).
type endpointSet struct {
	mu      sync.Mutex
	eps     []Endpoint
	err     error         // why the resolver could not learn the set, until it can
	known   bool          // the resolver reported at least once
	changed chan struct{} // closed and replaced when eps or known changes
}

// set records what the resolver reported: a new set, or (err non-nil) why
// it could not learn one, keeping the last set. It is the update function
// a client gives its resolver.
func (s *endpointSet) set(eps []Endpoint, err error) {
	if err == nil {
		if eps, err = normalize(eps); err != nil {
			err = fmt.Errorf("%w: it named a bad endpoint: %w", ErrResolver, err)
		}
	} else if !errors.Is(err, ErrResolver) {
		err = fmt.Errorf("%w: %w", ErrResolver, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
	wasKnown := s.known
	s.known = true
	if err == nil {
		if wasKnown && sameServers(s.eps, eps) {
			s.eps = eps // attributes may have changed; no need to wake anyone
			return
		}
		s.eps = eps
	} else if wasKnown {
		return
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// sameServers reports whether two sets name the same servers in order.
func sameServers(a, b []Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y Endpoint) bool {
		return x.ID == y.ID && x.Network == y.Network && x.Addr == y.Addr
	})
}

// get returns a copy of the set and the resolver's last error.
func (s *endpointSet) get() ([]Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.eps), s.err
}

// fixed makes the set one endpoint for good (Connect), taken as given so
// that Connect's errors for a bad address stay broker.Dial's.
func (s *endpointSet) fixed(ep Endpoint) {
	s.eps, s.known = []Endpoint{ep}, true
}

// move replaces a fixed set's one endpoint (a Pool's client whose server
// the resolver now names at another address under the same ID) and ends a
// backoff at once, as a changed set does for ConnectAny. The same
// endpoint, or one whose attributes only changed, wakes no one. It reports
// whether the address changed.
func (s *endpointSet) move(ep Endpoint) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sameServers(s.eps, []Endpoint{ep}) {
		s.eps = []Endpoint{ep}
		return false
	}
	s.eps = []Endpoint{ep}
	close(s.changed)
	s.changed = make(chan struct{})
	return true
}

// epsView is a snapshot of an endpointSet: the servers, the resolver's
// last error, and the channel closed at the set's next change.
type epsView struct {
	eps     []Endpoint
	err     error
	changed chan struct{}
}

// wait returns the set once the resolver has reported; ok is false if ctx
// ended first.
func (s *endpointSet) wait(ctx context.Context) (v epsView, ok bool) {
	for {
		s.mu.Lock()
		v = epsView{eps: slices.Clone(s.eps), err: s.err, changed: s.changed}
		known := s.known
		s.mu.Unlock()
		if known {
			return v, true
		}
		select {
		case <-v.changed:
		case <-ctx.Done():
			return epsView{}, false
		}
	}
}

// resolverOptions checks what ConnectAny and ConnectAll are given: the
// options, the resolver, and a ctx that has not ended.
func resolverOptions(ctx context.Context, r Resolver, opts []Option) (*options, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := checkResolver(r); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return o, nil
}
