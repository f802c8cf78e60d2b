package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/contrib/etcd"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// ttl is how long a region's entry outlives it if it dies without a word.
const ttl = 3 * time.Second

// regionManager is what each region publishes as "region".
type regionManager struct {
	remoteable.Referenceable
	name   string
	visits atomic.Int64
}

// RemoteMethods declares Hello safe to repeat; Visit is not.
func (*regionManager) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Hello": {Idempotent: true}}
}

// Hello greets an agent.
func (m *regionManager) Hello(ctx context.Context, agent string) (string, error) {
	return fmt.Sprintf("%s knows %s", m.name, agent), nil
}

// Visit counts a visit and says where it ran: every run counts.
func (m *regionManager) Visit(ctx context.Context) (string, error) {
	m.visits.Add(1)
	return m.name, nil
}

// region is one region server, its address and its announcement.
type region struct {
	name string
	addr string
	mgr  *regionManager
	srv  *broker.Server
	done chan error
	ann  *etcd.Announcement
}

// start serves the region on its address (a free port the first time)
// and announces it under the demo's prefix.
func (d *demo) start(ctx context.Context, r *region) error {
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	reg := registry.New()
	if err := reg.Register("region", r.mgr); err != nil {
		ln.Close()
		return err
	}
	r.addr = ln.Addr().String()
	r.srv, r.done = broker.NewServer(reg, broker.WithName(r.name), broker.WithLogger(d.log)), make(chan error, 1)
	go func(srv *broker.Server) { r.done <- srv.Serve(ln) }(r.srv)
	ep := remote.Endpoint{Network: "tcp", Addr: r.addr, ID: r.name}
	r.ann, err = etcd.Announce(ctx, d.cli, d.prefix, ep, etcd.WithTTL(ttl), etcd.WithLogger(d.log))
	if err != nil {
		d.stop(r, (*broker.Server).Close)
		return err
	}
	return nil
}

// drain withdraws the region from etcd, then shuts it down: its peers are
// told to go, and its running calls finish.
func (d *demo) drain(ctx context.Context, r *region) error {
	if err := r.ann.Withdraw(ctx); err != nil {
		return err
	}
	return d.stop(r, func(srv *broker.Server) error { return srv.Shutdown(ctx) })
}

// stop ends the region's server with how and waits for Serve to return.
func (d *demo) stop(r *region, how func(*broker.Server) error) error {
	if r.srv == nil {
		return nil
	}
	err := how(r.srv)
	<-r.done
	r.srv = nil
	return err
}

// agent is what an agent (a rack controller) publishes to every region
// as its root: a region reaches it by the id it announces.
type agent struct {
	remoteable.Referenceable
	id   string
	jobs atomic.Int64
}

// RemoteMethods declares Status safe to repeat.
func (*agent) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Status": {Idempotent: true}}
}

// Status says how many jobs the agent ran.
func (a *agent) Status(ctx context.Context) (string, error) {
	return fmt.Sprintf("%d job(s) done", a.jobs.Load()), nil
}

// Run runs a job a region gave.
func (a *agent) Run(ctx context.Context, job string) (string, error) {
	a.jobs.Add(1)
	return fmt.Sprintf("%s ran %q", a.id, job), nil
}

// connectAgent connects an agent to every region etcd names, announcing
// its id and offering itself as its root.
func (d *demo) connectAgent(ctx context.Context, a *agent) (*remote.Pool, error) {
	return remote.ConnectAll(ctx, etcd.NewResolver(d.cli, d.prefix, etcd.WithLogger(d.log)),
		remote.WithBroker(broker.WithName(a.id), broker.WithRoot(a), broker.WithLogger(d.log)),
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 500 * time.Millisecond}))
}

// demo is the demo's state: etcd, the regions, the agents and their pools.
type demo struct {
	out     io.Writer
	log     *slog.Logger
	cli     *clientv3.Client
	prefix  string
	regions []*region
	agents  []*agent
	pools   []*remote.Pool
	front   *remote.Client
}

// close stops everything the demo started, clients first.
func (d *demo) close() {
	if d.front != nil {
		d.front.Close()
	}
	for _, p := range d.pools {
		p.Close()
	}
	for _, r := range d.regions {
		if r.ann != nil {
			r.ann.Close()
		}
		d.stop(r, (*broker.Server).Close)
	}
}
