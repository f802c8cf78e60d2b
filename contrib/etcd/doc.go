// Package etcd finds the servers of a Tether fleet through etcd: a server
// announces its endpoint under a key prefix, held by a lease that it keeps
// alive while it serves, and a Resolver watches the prefix for
// remote.ConnectAny and remote.ConnectAll.
//
// It is a separate Go module (github.com/tether-go/tether/contrib/etcd), so
// that a user of the library who does not use etcd never downloads it.
//
// # Announcing
//
// A server announces itself once it listens, and withdraws before it drains,
// so that no new client picks it while it goes away:
//
//	a, err := etcd.Announce(ctx, cli, "/fleet/regions/",
//		remote.Endpoint{Network: "tcp", Addr: ln.Addr().String(), ID: "region-1"})
//	...
//	a.Withdraw(ctx)   // the key is gone at once: resolvers drop the server
//	srv.Shutdown(ctx) // its peers are told to go, its running calls finish
//
// The key is the prefix followed by the endpoint's ID (Network://Addr when
// the ID is empty); the value is the endpoint in JSON, for instance
// {"network":"tcp","addr":"10.0.0.7:7000","id":"region-1","attrs":{"zone":"b"}}
// ("attrs" may be left out; a writer in another language can announce a
// server by putting such a value under a lease). The key is
// attached to a lease of WithTTL seconds that the Announcement keeps alive
// in the background. A process that dies, or loses its link to etcd, stops
// renewing it, and etcd deletes the key when the lease expires: resolvers
// then drop the server. An Announcement whose lease lapsed while its process
// lives (its link to etcd was down longer than the TTL) says so (Err, and a
// warning in its log) and announces itself again, with a new lease, as soon
// as etcd answers.
//
// # Resolving
//
//	r := etcd.NewResolver(cli, "/fleet/regions/")
//	cl, err := remote.ConnectAny(ctx, r)   // one server at a time, failing over
//	pool, err := remote.ConnectAll(ctx, r) // one client per server
//
// The Resolver reads the prefix, pushes the full set of endpoints (in key
// order), then watches the prefix and pushes the full set again after every
// change. When its watch breaks (etcd unreachable long enough for the
// client to give up, or the revision compacted) it reports an error matching
// remote.ErrResolver, so that followers keep the set they have, and starts
// over with a fresh read. An entry that is not an endpoint (bad JSON, no
// network or address) is left out of the set and logged as a warning with
// its key: one bad writer cannot empty the fleet.
package etcd
