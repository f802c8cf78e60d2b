package etcd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remote"
)

// Resolver names the servers announced under a prefix (see Announce) and
// follows the prefix's changes: a remote.Resolver for remote.ConnectAny and
// remote.ConnectAll. It is safe for concurrent use, and one Resolver can
// serve any number of clients and pools (each runs its own watch).
type Resolver struct {
	cli    *clientv3.Client
	prefix string
	opts   *options
	err    error // a bad option or a missing client, reported by Resolve
}

var _ remote.Resolver = (*Resolver)(nil)

// NewResolver returns a resolver that names the endpoints announced under
// prefix, through cli. A nil client or a bad option makes Resolve fail at
// once with an error matching broker.ErrInvalidOption.
func NewResolver(cli *clientv3.Client, prefix string, opts ...Option) *Resolver {
	o, err := buildOptions(opts)
	if err == nil && cli == nil {
		err = fmt.Errorf("%w: etcd.NewResolver: no etcd client", broker.ErrInvalidOption)
	}
	return &Resolver{cli: cli, prefix: prefix, opts: o, err: err}
}

// Resolve implements remote.Resolver: it pushes the full set of endpoints
// under the prefix, then the full set again after every change, until ctx
// ends. When reading or watching the prefix fails it reports an error
// matching remote.ErrResolver and starts over a second later.
func (r *Resolver) Resolve(ctx context.Context, update func([]remote.Endpoint, error)) error {
	if r.err != nil {
		return r.err
	}
	for {
		err := r.follow(ctx, update)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.opts.logger.Warn("tether/etcd: following the prefix failed; reading it again", "prefix", r.prefix, "err", err)
		update(nil, fmt.Errorf("%w: etcd prefix %q: %w", remote.ErrResolver, r.prefix, err))
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// follow reads the prefix and pushes the set, then watches the prefix from
// the revision read and pushes the set after each change; it returns why
// the watch ended.
func (r *Resolver) follow(ctx context.Context, update func([]remote.Endpoint, error)) error {
	gctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	resp, err := r.cli.Get(gctx, r.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("reading the prefix: %w", err)
	}
	set := map[string]remote.Endpoint{}
	for _, kv := range resp.Kvs {
		r.put(set, kv.Key, kv.Value)
	}
	update(sorted(set), nil)

	// The watch starts right after the revision read, so that no change
	// falls between the two; WithRequireLeader ends it when the member
	// the client talks to loses its cluster, instead of waiting forever.
	wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer stop()
	wch := r.cli.Watch(wctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	for wr := range wch {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watching the prefix: %w", err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				delete(set, string(ev.Kv.Key))
			} else {
				r.put(set, ev.Kv.Key, ev.Kv.Value)
			}
		}
		update(sorted(set), nil)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watching the prefix: the watch ended")
}

// put records the endpoint stored under key, or, for a value that is not
// one, logs it and leaves the key out.
func (r *Resolver) put(set map[string]remote.Endpoint, key, value []byte) {
	ep, err := decodeEntry(string(key), value)
	if err != nil {
		delete(set, string(key))
		r.opts.logger.Warn("tether/etcd: left out an entry that is not an endpoint", "key", string(key), "err", err)
		return
	}
	set[string(key)] = ep
}

// sorted returns the set's endpoints in key order.
func sorted(set map[string]remote.Endpoint) []remote.Endpoint {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, strings.Compare)
	eps := make([]remote.Endpoint, len(keys))
	for i, k := range keys {
		eps[i] = set[k]
	}
	return eps
}
