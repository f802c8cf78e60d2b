// Package broker is Tether's engine: one connection between two processes,
// over which both sides export objects and call each other's methods.
//
// A connection is a yamux session over a net.Conn (TCP, TLS, a pipe). After a
// handshake (protocol version, names, credentials, from which the accepting
// side decides who the dialer is: see WithAuthenticator) every message
// is a length-prefixed CBOR frame on one long-lived stream; a message larger
// than 32 KiB travels on one of a few long-lived message streams so that it
// cannot hold up small calls. The wire is specified in docs/protocol.md.
//
// # Using it
//
// A server publishes a root object, usually a registry.Registry:
//
//	srv := broker.NewServer(reg, broker.WithToken(secret))
//	go srv.Serve(ln)
//	defer srv.Close()
//
// A client dials, and calls through references:
//
//	conn, err := broker.Dial(ctx, "tcp", addr, broker.WithToken(secret))
//	var users *broker.Ref
//	err = conn.Root().Call(ctx, "Lookup", &users, "users")
//	u, err := broker.Call[User](ctx, users, "Get", "alice")
//
// Dial gives one connection and no reconnection; package remote builds the
// lasting client on top of it.
//
// To stop a server without failing calls (a rolling restart), drain it:
// srv.Shutdown(ctx) stops accepting, tells every peer it is going away
// (ErrGoingAway), refuses new calls and closes once the running ones are
// answered. Every server answers Health, whatever its root.
//
// # What travels how
//
// Arguments and results are encoded by their Go types (see package
// remoteable): plain data as CBOR, registered Copyables by value with their
// name, objects embedding remoteable.Referenceable by reference, errors with
// their registered name. A handler parameter of type *Ref or any receives a
// reference the caller passed; a reference that comes back to the side that
// exported it decodes to the original object.
//
// # The caller's duties
//
//  1. Pass a context to every call. Its deadline travels with the call;
//     cancelling it cancels the handler's context on the far side and Call
//     returns ctx.Err() at once.
//  2. Release references when done with them (Ref.Release). Each received
//     reference is a handle of its own; the exporter drops an object once
//     every handle to it has been released. Handles that become unreachable
//     are released by the garbage collector, late.
//  3. Tell "the remote refused" from "the link died": a *RemoteError is
//     what the far side returned; ErrDeadReference (and ErrConnectionLost
//     for a call that may have run) means the connection is gone.
//  4. Close connections and servers you open. Close is idempotent; Done is
//     closed once every goroutine the connection started has returned.
//
// # The handler's duties
//
//  1. Return when the context is done: Close and Server.Close wait for
//     handlers, after cancelling their contexts.
//  2. Expect to run concurrently with other handlers of the same
//     connection. A panic fails only the call that caused it.
//  3. Do not call Server.Close or Server.Shutdown from a handler; start a
//     goroutine for it.
//  4. Know whom you act for. A call the handler makes with its context tells
//     the callee that it acts for the handler's caller (and whoever that
//     caller acted for: remoteable.Peer.ForwardedFor), so access policies
//     upstream judge them too; make it with AsSelf(ctx) to act on this
//     process's own authority instead.
//
// # Who is calling
//
// remoteable.PeerFrom(ctx) tells a handler who called: a name the server
// verified (by the peer's TLS certificate, or an Authenticator such as
// Tokens) or only announced (Peer.VerifiedBy says which), and whom the call
// acts for. Policies (remoteable.Guarded) are asked before anything of a
// call is decoded. WithRealm gives each peer a root of its own.
//
// # Metadata and interceptors
//
// A call carries optional string metadata (Metadata): the caller sets it
// on the context (AppendToOutgoing, WithOutgoingMetadata), the handler
// reads it (IncomingMetadata), and a relay passes it on unchanged. Options
// put interceptors around every call a connection makes
// (WithClientInterceptors) or handles (WithServerInterceptors): they see
// the call (CallInfo: kind, target, method, peer), its metadata and its
// result's error, whose CodeOf classifies it, and may refuse it. A
// connection without any pays nothing for the seam.
//
// # Who owns what
//
// A Conn owns its goroutines and stops them all when it ends. An idle one
// runs only its reader (besides yamux's two loops); the others run while
// they have work: the sender's drain goroutine while frames wait, the
// acceptor while message streams the peer opened wait, one reader per
// message stream, one goroutine per running handler, the keepalive's ping
// while it waits for its answer, and the teardown, from the moment the
// connection fails until Done. A Server owns its
// connections and handshakes. Exported objects belong to their owner: the
// connection only holds them while the peer has references.
//
// # Limits
//
// Every frame is checked before use: its length against WithMaxMessageSize
// before the body is read, then its CBOR for nesting (32 levels), container
// sizes (131072), indefinite lengths, duplicate map keys and invalid UTF-8.
// A peer that breaks the protocol is told why and disconnected; one call's bad
// arguments only fail that call. WithMaxConcurrentCalls, WithMaxExports and
// WithMaxSubscriptions bound what one peer can make this side run and hold;
// WithWriteTimeout
// disconnects a peer that stops reading; WithDeadPeerTimeout finds a peer
// that vanished.
package broker
