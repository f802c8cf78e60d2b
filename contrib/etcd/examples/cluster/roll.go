package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/contrib/etcd"
	"github.com/tether-go/tether/remote"
)

// frontend is a client that calls Visit non-stop through ConnectAny, and
// counts what it got.
type frontend struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErr   error
	stop       chan struct{}
	wg         sync.WaitGroup
}

// rollOne starts a frontend, then drains and restarts the region it uses
// while its calls go on: none fails, and each ran once.
func (d *demo) rollOne(ctx context.Context) error {
	f, err := d.startFrontend(ctx)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, "the frontend's calls go through", func() bool { return f.ok.Load() >= 50 }); err != nil {
		return err
	}
	ep, _ := d.front.Endpoint()
	r, err := d.region(ep.ID)
	if err != nil {
		return err
	}
	d.say("frontend: ConnectAny through etcd, on %s; 4 callers call Visit (not idempotent) non-stop", r.name)
	if err := d.restart(ctx, r); err != nil {
		return err
	}
	before := f.ok.Load()
	if err := waitFor(ctx, "more calls go through", func() bool { return f.ok.Load() >= before+50 }); err != nil {
		return err
	}
	close(f.stop)
	f.wg.Wait()
	var visits int64
	for _, r := range d.regions {
		visits += r.mgr.visits.Load()
	}
	d.say("frontend: %d calls to Visit, %d failed; the regions counted %d visits", f.ok.Load(), f.failed.Load(), visits)
	if f.failed.Load() > 0 || visits != f.ok.Load() {
		return fmt.Errorf("calls failed or ran twice during the restart (first failure: %v)", f.firstErr)
	}
	return nil
}

// restart drains region r, shows the fleet following, and starts it again
// on the same address.
func (d *demo) restart(ctx context.Context, r *region) error {
	d.say("%s: withdrawn from etcd, then drained (Shutdown)", r.name)
	if err := d.drain(ctx, r); err != nil {
		return err
	}
	if err := d.poolsFollow(ctx, 2); err != nil {
		return err
	}
	if err := waitFor(ctx, "the frontend moves", func() bool { ep, ok := d.front.Endpoint(); return ok && ep.ID != r.name }); err != nil {
		return err
	}
	now, _ := d.front.Endpoint()
	d.say("frontend: moved to %s by itself", now.ID)
	if err := d.start(ctx, r); err != nil {
		return err
	}
	d.say("%s: serving again on the same address, announced again", r.name)
	if err := d.poolsFollow(ctx, 3); err != nil {
		return err
	}
	if err := d.knowsAgents(ctx, r); err != nil {
		return err
	}
	return d.runOn(ctx, r, "rack-c", "rotate logs")
}

// poolsFollow waits until every agent's pool follows n regions, and shows
// the first one's.
func (d *demo) poolsFollow(ctx context.Context, n int) error {
	for i, p := range d.pools {
		if err := waitFor(ctx, fmt.Sprintf("%s's pool follows %d regions", d.agents[i].id, n), func() bool { return len(p.Endpoints()) == n }); err != nil {
			return err
		}
	}
	d.say("  the agents' pools follow: %s", strings.Join(endpointIDs(d.pools[0].Endpoints()), ", "))
	return nil
}

// startFrontend connects the frontend and starts its callers.
func (d *demo) startFrontend(ctx context.Context) (*frontend, error) {
	cl, err := remote.ConnectAny(ctx, etcd.NewResolver(d.cli, d.prefix, etcd.WithLogger(d.log)),
		remote.WithBroker(broker.WithLogger(d.log)))
	if err != nil {
		return nil, err
	}
	d.front = cl
	ref, err := cl.Registry().Lookup(ctx, "region")
	if err != nil {
		return nil, err
	}
	f := &frontend{stop: make(chan struct{})}
	for range 4 {
		f.wg.Add(1)
		go f.call(ctx, ref)
	}
	return f, nil
}

// call calls Visit until stopped, counting the outcomes.
func (f *frontend) call(ctx context.Context, ref *remote.Ref) {
	defer f.wg.Done()
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		if _, err := broker.Call[string](ctx, ref, "Visit"); err != nil {
			f.mu.Lock()
			if f.firstErr == nil {
				f.firstErr = err
			}
			f.mu.Unlock()
			f.failed.Add(1)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.ok.Add(1)
	}
}

// region returns the region of that name.
func (d *demo) region(name string) (*region, error) {
	for _, r := range d.regions {
		if r.name == name {
			return r, nil
		}
	}
	return nil, fmt.Errorf("the frontend is on %q, which is no region of the demo", name)
}
