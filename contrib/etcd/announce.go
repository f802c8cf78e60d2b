package etcd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remote"
)

// ErrLapsed reports an announcement whose lease expired, or could not be
// renewed, while its process still serves: its link to etcd was down
// longer than the TTL. Resolvers no longer name the server until the
// Announcement has announced it again, which it does by itself.
var ErrLapsed = errors.New("tether/etcd: the announcement's lease lapsed")

// ErrWithdrawn reports an announcement that was withdrawn (Withdraw or
// Close).
var ErrWithdrawn = errors.New("tether/etcd: the announcement was withdrawn")

// Announcement is a server's entry under a prefix, kept alive while it
// serves. Make one with Announce; end it with Withdraw (or Close) before
// the server drains.
type Announcement struct {
	cli   *clientv3.Client
	key   string
	value string
	opts  *options

	ctx    context.Context // cancelled by Withdraw: ends keep
	cancel context.CancelFunc
	done   chan struct{} // closed when keep has returned

	withdrawOnce sync.Once
	withdrawErr  error

	mu    sync.Mutex
	lease clientv3.LeaseID // the lease the key is attached to, 0 while lapsed
	err   error            // why the server is not announced now, nil while it is
}

// Announce puts ep under prefix (the key is prefix + ep's ID, or
// prefix + Network://Addr without one), attached to a lease it keeps alive
// in the background until Withdraw or Close. It returns once the key is
// in etcd, and fails when ctx ends first or etcd refuses; a missing client,
// an endpoint without network or address, or a bad option is an error
// matching broker.ErrInvalidOption. ctx is not used after it returns.
func Announce(ctx context.Context, cli *clientv3.Client, prefix string, ep remote.Endpoint, opts ...Option) (*Announcement, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	if cli == nil {
		return nil, fmt.Errorf("%w: etcd.Announce: no etcd client", broker.ErrInvalidOption)
	}
	if ep.Network == "" || ep.Addr == "" {
		return nil, fmt.Errorf("%w: etcd.Announce: endpoint %+v: give both Network and Addr", broker.ErrInvalidOption, ep)
	}
	value, err := encodeEntry(ep)
	if err != nil {
		return nil, fmt.Errorf("%w: etcd.Announce: %w", broker.ErrInvalidOption, err)
	}
	a := &Announcement{cli: cli, key: prefix + endpointID(ep), value: value, opts: o, done: make(chan struct{})}
	lease, err := a.put(ctx)
	if err != nil {
		return nil, fmt.Errorf("tether/etcd: announcing %s: %w", a.key, err)
	}
	a.lease = lease
	a.ctx, a.cancel = context.WithCancel(context.Background())
	go a.keep(lease)
	return a, nil
}

// Key returns the key the announcement puts in etcd.
func (a *Announcement) Key() string { return a.key }

// Err returns nil while the server is announced, an error matching
// ErrLapsed while its lease has lapsed (the Announcement is announcing it
// again), and one matching ErrWithdrawn once withdrawn.
func (a *Announcement) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// put grants a lease and puts the key under it, bounded by ctx; a lease
// granted for a put that failed is revoked, best effort.
func (a *Announcement) put(ctx context.Context) (clientv3.LeaseID, error) {
	g, err := a.cli.Grant(ctx, a.opts.ttlSeconds())
	if err != nil {
		return 0, fmt.Errorf("granting a lease: %w", err)
	}
	if _, err := a.cli.Put(ctx, a.key, a.value, clientv3.WithLease(g.ID)); err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), a.opts.timeout)
		defer cancel()
		a.cli.Revoke(rctx, g.ID) // it would expire anyway: a failure changes nothing
		return 0, fmt.Errorf("putting the key: %w", err)
	}
	return g.ID, nil
}

// keep renews the lease until Withdraw; when the lease lapses it records
// why, and announces the server again with a new lease as soon as etcd
// answers.
func (a *Announcement) keep(lease clientv3.LeaseID) {
	defer close(a.done)
	for {
		err := a.renew(lease)
		if a.ctx.Err() != nil {
			return
		}
		a.lapsed(err)
		if lease = a.reannounce(); lease == 0 {
			return // withdrawn meanwhile
		}
	}
}

// renew keeps lease alive until it lapses or Withdraw; it returns why the
// lease is gone.
func (a *Announcement) renew(lease clientv3.LeaseID) error {
	ch, err := a.cli.KeepAlive(a.ctx, lease)
	if err != nil {
		return err
	}
	// The client closes ch when etcd says the lease is gone, when no
	// renewal was answered within the TTL, or when a.ctx ends.
	for range ch {
	}
	return fmt.Errorf("no renewal of lease %x answered within %ds, or etcd says it expired", lease, a.opts.ttlSeconds())
}

// lapsed records and logs that the lease is gone.
func (a *Announcement) lapsed(cause error) {
	err := fmt.Errorf("%w: %s: %w", ErrLapsed, a.key, cause)
	a.opts.logger.Warn("tether/etcd: announcement lapsed; announcing again", "key", a.key, "err", cause)
	a.mu.Lock()
	a.lease, a.err = 0, err
	a.mu.Unlock()
}

// reannounce puts the key again under a new lease, trying every second
// (each try bounded by the request timeout) until it succeeds or Withdraw;
// it returns the new lease, or 0 when withdrawn.
func (a *Announcement) reannounce() clientv3.LeaseID {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(a.ctx, a.opts.timeout)
		lease, err := a.put(ctx)
		cancel()
		if err == nil {
			a.mu.Lock()
			a.lease, a.err = lease, nil
			a.mu.Unlock()
			a.opts.logger.Info("tether/etcd: announced again", "key", a.key)
			return lease
		}
		select {
		case <-tick.C:
		case <-a.ctx.Done():
			return 0
		}
	}
}

// Withdraw stops renewing the lease and revokes it, which deletes the key
// at once: resolvers drop the server. Call it before Server.Shutdown, so
// that no new client picks a server that is going away. When the revoke
// fails (ctx ended, etcd unreachable) the key still goes, when the lease
// expires, and Withdraw says so. It is idempotent: later calls return the
// first one's result.
//
// Withdraw before closing the etcd client: until then the Announcement
// renews the lease, or tries to announce the server again, through it.
func (a *Announcement) Withdraw(ctx context.Context) error {
	a.withdrawOnce.Do(func() {
		a.cancel()
		<-a.done
		a.mu.Lock()
		lease := a.lease
		a.lease, a.err = 0, fmt.Errorf("%w: %s", ErrWithdrawn, a.key)
		a.mu.Unlock()
		if lease == 0 {
			return // lapsed: the key is gone, or goes with the lease
		}
		if _, err := a.cli.Revoke(ctx, lease); err != nil {
			a.withdrawErr = fmt.Errorf("tether/etcd: withdrawing %s: %w (the key goes when its lease expires, within %ds)", a.key, err, a.opts.ttlSeconds())
		}
	})
	return a.withdrawErr
}

// Close withdraws the announcement as Withdraw does, bounded by the
// request timeout (WithRequestTimeout).
func (a *Announcement) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.timeout)
	defer cancel()
	return a.Withdraw(ctx)
}
