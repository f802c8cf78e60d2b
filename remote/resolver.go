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

// ErrNoEndpoints reports that a resolver named no server to dial: its set
// of endpoints is empty, or it has not learnt one yet. A client in that
// state is Waiting, and dials as soon as the resolver names a server.
var ErrNoEndpoints = broker.NewError(broker.Unavailable, errors.New("tether: the resolver names no server"))

// ErrResolver reports that a resolver could not learn the set of
// endpoints (a failed DNS lookup, say). The client or pool keeps the last
// set it learnt, and the resolver tries again by itself.
var ErrResolver = broker.NewError(broker.Unavailable, errors.New("tether: resolving the servers failed"))

// Endpoint is one server a Resolver names.
type Endpoint struct {
	// Network and Addr are what broker.Dial is given ("tcp", "host:port").
	Network, Addr string
	// ID is the server's stable identity: the key a Pool finds its client
	// by, and what tells a changed set's servers apart. Empty means
	// Network + "://" + Addr. A set naming one ID at two addresses is
	// refused (ConnectAny and ConnectAll fail with broker.ErrInvalidOption
	// for a Static resolver; for others the set is a resolver error, and
	// the last good set stays); the same endpoint twice counts once.
	ID string
	// Attrs are whatever the resolver knows about the server (a DNS SRV
	// record's priority and weight, say); Tether does not read them.
	Attrs map[string]string
}

// key returns the endpoint's identity: ID, or Network://Addr without one.
func (e Endpoint) key() string {
	if e.ID != "" {
		return e.ID
	}
	return e.Network + "://" + e.Addr
}

// String returns the endpoint's address, and its ID when that differs.
func (e Endpoint) String() string {
	if e.ID == "" || e.ID == e.Network+"://"+e.Addr {
		return e.Addr
	}
	return fmt.Sprintf("%s (%s)", e.Addr, e.ID)
}

// normalize returns the endpoints with their IDs filled in, in order, the
// first of each ID kept. An endpoint without an address is an error, and
// so is an ID given to two addresses: one of the two servers would be
// dropped without a word.
func normalize(eps []Endpoint) ([]Endpoint, error) {
	out := make([]Endpoint, 0, len(eps))
	seen := map[string]Endpoint{}
	for _, e := range eps {
		if e.Network == "" || e.Addr == "" {
			return nil, fmt.Errorf("%w: endpoint %+v: give both Network and Addr", broker.ErrInvalidOption, e)
		}
		e.ID = e.key()
		if first, dup := seen[e.ID]; dup {
			if first.Network != e.Network || first.Addr != e.Addr {
				return nil, fmt.Errorf("%w: endpoints %s://%s and %s://%s have the same ID %q: give each server its own",
					broker.ErrInvalidOption, first.Network, first.Addr, e.Network, e.Addr, e.ID)
			}
			continue
		}
		seen[e.ID] = e
		out = append(out, e)
	}
	return out, nil
}

// Resolver names the servers of a fleet: it pushes the full current set of
// endpoints each time the set changes. Naming is kept apart from picking:
// ConnectAny picks one endpoint at a time, ConnectAll dials them all.
//
// Resolve calls update with the full set once it knows it, then again with
// the full set after every change, until ctx ends; it then returns ctx's
// error. When it cannot learn the set (a failed lookup) it calls update
// with nil endpoints and an error matching ErrResolver, keeps trying by
// itself, and the caller keeps the last set it had until the next set,
// which clears the error. Resolve returns any other error only when it
// can never name a server (a malformed name, say). update is never called
// concurrently with itself, and must not block for long: a Client and a
// Pool only record the set in it.
//
// A resolver that can look again on demand has a method ResolveNow(); a
// Client made by ConnectAny calls it after a pass in which every server
// failed, since the servers may have moved (DNSResolver has one).
type Resolver interface {
	Resolve(ctx context.Context, update func(endpoints []Endpoint, err error)) error
}

// StaticResolver names a fixed set of endpoints, which Update replaces (for
// tests, or a configuration reloaded by hand).
type StaticResolver struct {
	mu      sync.Mutex
	eps     []Endpoint
	changed chan struct{} // closed and replaced by Update
}

var _ Resolver = (*StaticResolver)(nil)

// Static returns a resolver that names endpoints, until Update changes them.
func Static(endpoints ...Endpoint) *StaticResolver {
	return &StaticResolver{eps: slices.Clone(endpoints), changed: make(chan struct{})}
}

// Update replaces the set of endpoints: every Client and Pool following
// the resolver learns the new set.
func (s *StaticResolver) Update(endpoints ...Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.eps = slices.Clone(endpoints)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Resolve implements Resolver: it pushes the set now, and again after each
// Update, until ctx ends.
func (s *StaticResolver) Resolve(ctx context.Context, update func([]Endpoint, error)) error {
	for {
		s.mu.Lock()
		eps, changed := slices.Clone(s.eps), s.changed
		s.mu.Unlock()
		update(eps, nil)
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endpointList describes a set of endpoints for an error message.
func endpointList(eps []Endpoint) string {
	names := make([]string, len(eps))
	for i, e := range eps {
		names[i] = e.String()
	}
	return strings.Join(names, ", ")
}
