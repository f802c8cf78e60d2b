package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/tether-go/tether/remoteable"
)

// Pool holds one Client per server a Resolver names, and keeps them in
// step with it: a server that appears is dialled, the client of one that
// vanishes is closed, and one the resolver names at a new address under
// the same ID keeps its client, which dials the new address. Each client is what Connect makes for its server:
// it redials by itself, and its references and mirrors survive its
// outages. A Pool is safe for concurrent use.
//
// Every client dials with the same options, so a process that wants each
// server to know it and call it back gives WithBroker(broker.WithName(id),
// broker.WithRoot(obj)): each server then finds it by that name
// (broker.Server.ConnByName) and calls obj, whichever servers join later.
type Pool struct {
	opts     *options
	resolver Resolver

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	resolved  chan struct{} // closed when the resolver has returned
	removing  sync.WaitGroup
	closeOnce sync.Once

	mu      sync.Mutex
	order   []Endpoint         // the resolver's last set, in its order
	clients map[string]*Client // by endpoint ID
	err     error              // why the resolver could not learn the set, until it can
}

// ConnectAll returns a Pool holding one Client per server r names, and
// starts following r in the background. It fails only on bad options;
// ctx is not used after it returns.
func ConnectAll(ctx context.Context, r Resolver, opts ...Option) (*Pool, error) {
	o, err := resolverOptions(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		opts: o, resolver: r,
		ctx: pctx, cancel: cancel,
		resolved: make(chan struct{}),
		clients:  map[string]*Client{},
	}
	go p.follow()
	return p, nil
}

// Clients returns the pool's clients, in the order the resolver names
// their servers.
func (p *Pool) Clients() []*Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Client, 0, len(p.order))
	for _, ep := range p.order {
		out = append(out, p.clients[ep.ID])
	}
	return out
}

// Client returns the client of the server whose endpoint has the given ID
// (Endpoint.ID, or Network://Addr when the resolver gave none).
func (p *Pool) Client(id string) (*Client, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cl, ok := p.clients[id]
	return cl, ok
}

// Endpoints returns the servers the pool follows, in the resolver's order.
func (p *Pool) Endpoints() []Endpoint {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order)
}

// Targets returns the pool's servers and, for each, a wrapper (a *Ref) for
// the manager registered under name there, to Gather over: result i comes
// from endpoint i. A wrapper obtains its target when first called, so a
// server that is down or lacks the manager fails its own result, not the
// gather.
//
//	eps, targets := pool.Targets("status")
//	for res := range remote.Gather[string](ctx, targets, "Status") {
//		fmt.Println(eps[res.Index].ID, res.Value, res.Err)
//	}
func (p *Pool) Targets(name string) ([]Endpoint, []remoteable.Caller) {
	p.mu.Lock()
	defer p.mu.Unlock()
	targets := make([]remoteable.Caller, len(p.order))
	for i, ep := range p.order {
		targets[i] = p.clients[ep.ID].registry.byName(name)
	}
	return slices.Clone(p.order), targets
}

// Err returns why the resolver could not learn the set of servers (it
// matches ErrResolver), or nil while it can: the pool then keeps the last
// set it learnt.
func (p *Pool) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Close stops following the resolver and closes every client, waiting
// for them as Client.Close does. It is idempotent.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		<-p.resolved
		p.mu.Lock()
		clients := make([]*Client, 0, len(p.clients))
		for _, cl := range p.clients {
			clients = append(clients, cl)
		}
		p.mu.Unlock()
		for _, cl := range clients {
			cl.Close()
		}
		p.removing.Wait()
	})
	<-p.resolved
	p.removing.Wait()
	return nil
}

// follow runs the resolver until Close, applying each set it names.
func (p *Pool) follow() {
	defer close(p.resolved)
	err := p.resolver.Resolve(p.ctx, p.update)
	if p.ctx.Err() != nil {
		return
	}
	if err == nil {
		err = errors.New("it returned before the pool was closed")
	}
	p.update(nil, fmt.Errorf("%w: the resolver stopped: %w", ErrResolver, err))
}

// update applies what the resolver reported: it dials the servers that
// joined and closes the clients of those that left; on an error it keeps
// the set and records why.
func (p *Pool) update(eps []Endpoint, err error) {
	if err == nil {
		if eps, err = normalize(eps); err != nil {
			err = fmt.Errorf("%w: it named a bad endpoint: %w", ErrResolver, err)
		}
	} else if !errors.Is(err, ErrResolver) {
		err = fmt.Errorf("%w: %w", ErrResolver, err)
	}
	p.mu.Lock()
	if err != nil || p.ctx.Err() != nil {
		p.err = err
		p.mu.Unlock()
		return
	}
	p.err = nil
	added, removed, moved := p.apply(eps)
	p.mu.Unlock()
	for _, ep := range moved {
		p.opts.logger.Info("tether: pool's server moved to another address", "server", ep.String())
	}
	for _, cl := range added {
		p.opts.logger.Info("tether: pool adds a server", "server", cl.serverName())
		go cl.run()
	}
	for _, cl := range removed {
		p.opts.logger.Info("tether: pool drops a server the resolver no longer names", "server", cl.serverName())
		p.removing.Add(1)
		// Closed apart, so that a client slow to close (a handler still
		// running) does not hold up the servers that joined.
		go func() {
			defer p.removing.Done()
			cl.Close()
		}()
	}
}

// apply makes eps the pool's set, returning the clients made for the
// servers that joined (not yet dialing), those of the servers that left,
// and the servers that kept their ID at another address. It runs with
// p.mu held.
func (p *Pool) apply(eps []Endpoint) (added, removed []*Client, moved []Endpoint) {
	keep := make(map[string]bool, len(eps))
	for _, ep := range eps {
		keep[ep.ID] = true
		if cl, ok := p.clients[ep.ID]; ok {
			// The server may have moved (restarted on another address under
			// the same ID): its client dials the new address from its next
			// attempt on, keeping its references and mirrors.
			if cl.eps.move(ep) {
				moved = append(moved, ep)
			}
			continue
		}
		cl := newClient(p.opts, nil)
		cl.eps.fixed(ep)
		p.clients[ep.ID] = cl
		added = append(added, cl)
	}
	for id, cl := range p.clients {
		if !keep[id] {
			delete(p.clients, id)
			removed = append(removed, cl)
		}
	}
	p.order = eps
	return added, removed, moved
}
