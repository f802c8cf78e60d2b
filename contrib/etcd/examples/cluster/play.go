package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// play runs the demo's scenes in order.
func (d *demo) play(ctx context.Context) error {
	for _, scene := range []func(context.Context) error{d.startRegions, d.startAgents, d.callByID, d.gatherRegions, d.rollOne} {
		if err := scene(ctx); err != nil {
			return err
		}
	}
	d.say("done")
	return nil
}

// startRegions starts and announces three regions.
func (d *demo) startRegions(ctx context.Context) error {
	for i := 1; i <= 3; i++ {
		r := &region{name: fmt.Sprintf("region-%d", i)}
		r.mgr = &regionManager{name: r.name}
		if err := d.start(ctx, r); err != nil {
			return err
		}
		d.regions = append(d.regions, r)
		d.say("%s: serving, announced in etcd as %s (lease %v)", r.name, strings.TrimPrefix(r.ann.Key(), d.prefix), ttl)
	}
	return nil
}

// startAgents connects three agents to every region through etcd, and
// waits until each region knows each agent by id.
func (d *demo) startAgents(ctx context.Context) error {
	for _, id := range []string{"rack-a", "rack-b", "rack-c"} {
		a := &agent{id: id}
		pool, err := d.connectAgent(ctx, a)
		if err != nil {
			return err
		}
		d.agents, d.pools = append(d.agents, a), append(d.pools, pool)
	}
	for i, a := range d.agents {
		if err := waitFor(ctx, a.id+" follows the three regions", func() bool { return len(d.pools[i].Endpoints()) == 3 }); err != nil {
			return err
		}
		d.say("%s: ConnectAll through etcd: %s", a.id, strings.Join(endpointIDs(d.pools[i].Endpoints()), ", "))
	}
	for _, r := range d.regions {
		if err := d.knowsAgents(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// knowsAgents waits until region r has a connection from every agent, and
// says so.
func (d *demo) knowsAgents(ctx context.Context, r *region) error {
	err := waitFor(ctx, r.name+" knows every agent", func() bool {
		for _, a := range d.agents {
			if _, ok := r.srv.ConnByName(a.id); !ok {
				return false
			}
		}
		return true
	})
	if err == nil {
		d.say("%s: agents connected: %s", r.name, strings.Join(agentNames(r.srv), ", "))
	}
	return err
}

// callByID has region-1 call one agent by its id, then gather the status
// of every agent connected to it.
func (d *demo) callByID(ctx context.Context) error {
	r := d.regions[0]
	if err := d.runOn(ctx, r, "rack-b", "configure dhcp"); err != nil {
		return err
	}
	conns := r.srv.Conns()
	var names []string
	var targets []remoteable.Caller
	for _, c := range conns {
		if c.Peer().Name != "" {
			names, targets = append(names, c.Peer().Name), append(targets, c.Root())
		}
	}
	d.say("%s: gathers Status from every agent connected to it:", r.name)
	res := make([]string, len(targets))
	for g := range remote.Gather[string](ctx, targets, "Status") {
		res[g.Index] = resultText(g.Value, g.Err)
	}
	lines := make([]string, len(names))
	for i := range names {
		lines[i] = fmt.Sprintf("  %s: %s", names[i], res[i])
	}
	slices.Sort(lines)
	for _, l := range lines {
		d.say("%s", l)
	}
	return nil
}

// runOn has region r call the agent with the given id: the connection
// the agent made, found by the name it announced.
func (d *demo) runOn(ctx context.Context, r *region, id, job string) error {
	c, ok := r.srv.ConnByName(id)
	if !ok {
		return fmt.Errorf("%s does not know %s", r.name, id)
	}
	var got string
	if err := c.Root().Call(ctx, "Run", &got, job); err != nil {
		return err
	}
	d.say("%s -> %s (ConnByName): %s", r.name, id, got)
	return nil
}

// gatherRegions has one agent gather a greeting from every region.
func (d *demo) gatherRegions(ctx context.Context) error {
	a, pool := d.agents[0], d.pools[0]
	eps, targets := pool.Targets("region")
	d.say("%s: gathers Hello from every region:", a.id)
	for g := range remote.Gather[string](ctx, targets, "Hello", a.id) {
		if g.Err != nil {
			return fmt.Errorf("%s: %w", eps[g.Index].ID, g.Err)
		}
		d.say("  %s: %s", eps[g.Index].ID, g.Value)
	}
	return nil
}

// endpointIDs returns the endpoints' IDs.
func endpointIDs(eps []remote.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.ID
	}
	return out
}

// agentNames returns the sorted names of the server's named peers.
func agentNames(srv *broker.Server) []string {
	var names []string
	for _, c := range srv.Conns() {
		if n := c.Peer().Name; n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// resultText is a gathered value, or its error.
func resultText(v string, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}

// waitFor checks cond every 10 ms until it holds, or fails when ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w", what, ctx.Err())
		}
	}
	return nil
}
