// Package remote is the client side that lasts: a Client that dials and
// redials in the background, and wrapped references (*Ref) that re-obtain
// their targets after an outage, so that code holding them keeps working.
//
//	cl, err := remote.Connect(ctx, "tcp", addr)        // returns at once
//	defer cl.Close()
//	users, err := cl.Registry().Lookup(ctx, "users")  // a *remote.Ref
//	u, err := broker.Call[User](ctx, users, "Get", "alice")
//
// # Link states
//
// A Client is Connecting (a dial attempt is in progress), Connected, Waiting
// (backing off after a failed attempt), Refused (the server refused the
// last attempt) or Closed. A call made while Connecting waits for that
// attempt, bounded by its context; a call made while Waiting fails at once
// with ErrDisconnected, unless its context was made with WaitForLink, in
// which case it waits for the link (bounded by the context). These are
// grpc-go's CONNECTING and TRANSIENT_FAILURE semantics. Connected and
// Disconnected are emitted exactly once per transition.
//
// # Refusals
//
// A refusal is not an outage: a wrong token or name, a TLS certificate that
// did not verify (broker.ErrAuthFailed), another protocol version
// (broker.ErrVersionMismatch) or a realm with no root for the client
// (remoteable.ErrAccessDenied) lasts until someone changes a configuration.
// While Refused, every call fails at once with the refusal, which matches
// its sentinel and not ErrDisconnected, even a call that waits for the
// link; Err returns it, Stats counts it, and the Refused signal fires for
// each refused attempt. The client keeps redialling at the backoff's cap,
// so it connects by itself once the server (or what it trusts) is fixed.
//
// # Backoff
//
// Backoff between failed attempts is exponential, jittered and capped
// (WithBackoff). It starts over after a steady link: one that stayed up
// for the backoff's cap (Backoff.Max). A link that ends sooner counts as a
// failed attempt and, except the first since the backoff started over, is
// waited out, so a server that accepts connections and drops them, at
// once or after a while, is redialled at most once per cap instead of in a
// storm; a steady link that ends is redialled at once.
//
// # Draining servers
//
// A server that drains (broker.Server.Shutdown) tells its peers it is going
// away. The Client then dials again at once, neither waiting out a backoff
// nor counting it as a failed attempt, while its calls in flight finish on
// the old connection; Disconnected (with an error matching
// broker.ErrGoingAway) and Connected fire once each. A call the draining
// server refused did not run: a *Ref makes it again on the new link by
// itself, whether or not its method is idempotent. So does a call that
// another caller overtook, moving the *Ref to the new link while the call
// was on its way to the old one, before anything was sent.
//
// # Wrapped references
//
// A *Ref remembers how it was obtained: from the registry by name, or by a
// call on another *Ref. After a reconnect it obtains its target again the
// first time it is used: by name from the new registry, or by replaying the
// call that returned it — only if that method is declared safe to repeat
// (remoteable.MethodOptions.Idempotent); otherwise it fails with
// broker.ErrDeadReference. A call that may already have reached the server
// is never repeated silently: one that was in flight when the link died
// fails with broker.ErrConnectionLost, unless its method is declared
// idempotent, in which case it is retried once after the link is back.
// Nor is one that ran but whose result could not be taken: a model
// received as a mirror whose subscription met a drain or an outage, say.
// The caller gets that error, and the call is made again only if its
// method is declared idempotent. An error the far side returned is the
// handler's, whatever sentinel it matches (broker.ErrReleased, say): such
// a call is not made again either.
//
// # Relays
//
// A Client's Registry can be published again: broker.NewServer(cl.Registry())
// makes a relay whose downstream peers look up and call upstream managers
// through it. The relay forwards calls without knowing their Go types, hands
// out references that stay valid across outages of its upstream link, and
// passes references from downstream up, so the upstream can call back. A
// call made with WaitForLink waits for the relay's upstream link as well:
// the wish travels with the call, bounded by the caller's deadline.
//
// # Gather
//
// Gather calls a method on many peers at once and delivers the results as
// they arrive, bounded by the context.
//
// # Fleets
//
// A Resolver names the servers of a fleet and pushes the full set each
// time it changes: Static (a list, replaced by Update) or DNS (SRV or
// A/AAAA records, looked up again on a timer). ConnectAny returns a Client
// that holds one link at a time to one of them and fails over to another
// when its link ends — to the code above, a reconnect — with the backoff
// counting full passes over the set; Endpoint tells which server is in
// use. ConnectAll returns a Pool: one Client per server, kept in step with
// the resolver, found by endpoint ID, and Targets to Gather over them all.
//
//	r := remote.Static(remote.Endpoint{Network: "tcp", Addr: a1}, remote.Endpoint{Network: "tcp", Addr: a2})
//	cl, err := remote.ConnectAny(ctx, r)
//	pool, err := remote.ConnectAll(ctx, r)
//
// # Logs
//
// A Client is silent unless given a logger (WithLogger): it then logs its
// link's transitions at info, and what needs someone's attention (a lost
// link, failed and refused attempts, a reference or mirror it can no
// longer keep) at warn, with an outage's repeated failures at most once
// per backoff cap. Its connections log to the same logger.
package remote
