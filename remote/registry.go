package remote

import (
	"context"
	"strconv"
	"sync"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remoteable"
)

// Registry is a server's registry seen through a Client: Lookup returns
// wrappers that survive outages. It is itself Referenceable and answers
// Lookup and List, so broker.NewServer(cl.Registry()) republishes the
// upstream registry (a relay), and registry.WithUpstream mixes it with
// local managers.
type Registry struct {
	remoteable.Referenceable

	cl   *Client
	mu   sync.Mutex
	refs map[string]*Ref
}

// RemoteMethods declares Lookup's result a reference and both methods safe
// to repeat, as on a local registry.
func (g *Registry) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{
		"Lookup":  {Idempotent: true, ByReference: true},
		"List":    {Idempotent: true},
		"Resolve": {Local: true},
	}
}

// Lookup returns the wrapper for the manager registered upstream under
// name. The same name gives the same wrapper. It asks the server now, so an
// unknown name fails at once with an error matching registry.ErrNotFound;
// called for a peer (a relay's Lookup), it asks the server every time, on
// that peer's behalf, so that the server's policies judge each caller.
func (g *Registry) Lookup(ctx context.Context, name string) (*Ref, error) {
	g.mu.Lock()
	r, ok := g.refs[name]
	if !ok {
		r = newRef(g.cl)
		r.name = name
	}
	g.mu.Unlock()
	if _, forOthers := remoteable.PeerFrom(ctx); ok && forOthers {
		// The wrapper was obtained for an earlier caller: a relay asks
		// upstream again, so that its policies judge this caller too.
		if err := g.lookUpstream(ctx, name); err != nil {
			return nil, err
		}
	}
	if _, _, err := r.resolve(ctx); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old, ok := g.refs[name]; ok {
		return old, nil // another caller's wrapper won
	}
	g.refs[name] = r
	return r, nil
}

// byName returns the wrapper for name without asking the server: it
// obtains its target when first called (Pool.Targets).
func (g *Registry) byName(name string) *Ref {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := g.refs[name]; ok {
		return r
	}
	r := newRef(g.cl)
	r.name = name
	g.refs[name] = r
	return r
}

// lookUpstream asks the server for name on behalf of the caller ctx
// belongs to, and lets the reference go: only the answer matters.
func (g *Registry) lookUpstream(ctx context.Context, name string) error {
	conn, err := g.cl.link(ctx)
	if err != nil {
		return withCall(err, "Lookup", strconv.Quote(name))
	}
	t, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", name)
	if err != nil {
		return err
	}
	t.Release()
	return nil
}

// List returns the names registered upstream.
func (g *Registry) List(ctx context.Context) ([]string, error) {
	conn, err := g.cl.link(ctx)
	if err != nil {
		return nil, withMethod(err, "List")
	}
	return broker.Call[[]string](ctx, conn.Root(), "List")
}

// Resolve is Lookup returning the wrapper as an any, for registry.Upstream.
func (g *Registry) Resolve(ctx context.Context, name string) (any, error) {
	return g.Lookup(ctx, name)
}
