package remoteable

import (
	"context"
	"fmt"
	"slices"
)

// Policy decides whether the parties behind a call may invoke a method. ctx
// is the call's context: PeerFrom(ctx) tells who is calling and, for a call
// passed on by relays, whom it acts for. A non-nil error refuses the call
// and is what the caller receives; wrap ErrAccessDenied so that the caller
// can recognise it.
//
// The broker asks the policy before it decodes anything of the call, on the
// connection's reader: Allow must be quick and must not call the peer. A
// refused call costs the server nothing more and tells the caller nothing
// about the object (not even whether the method exists). For
// DescribeMethod ("tether.describe") the policy is asked once for the
// description and then once per method, and the description lists only
// the methods it allows.
type Policy interface {
	Allow(ctx context.Context, method string) error
}

// Guarded is implemented by objects that restrict who may call them. The
// broker consults the policy before every remote call on the object, and
// before a call through a reference to it (a *broker.Ref that came home)
// made with a handler's context, for that handler's caller; calling the
// object's Go methods directly in process is not checked.
type Guarded interface {
	RemotePolicy() Policy
}

// PolicyFunc adapts a function to a Policy.
type PolicyFunc func(ctx context.Context, method string) error

// Allow calls f.
func (f PolicyFunc) Allow(ctx context.Context, method string) error { return f(ctx, method) }

// AcceptOnlyFrom returns a Policy that admits a call only when every party
// it acts for is verified and named in names: the peer itself, and each
// identity in its ForwardedFor. So a relay that may call a method does not
// lend that right to the callers it forwards for: each of them must be
// admitted on its own (no confused deputy). An unverified name is refused
// with ErrUnverified however it is spelled, since anyone can announce any
// name: verify peers with mutual TLS or an authenticator
// (broker.WithAuthenticator, broker.Tokens).
func AcceptOnlyFrom(names ...string) Policy { return peerPolicy(names, admitAll) }

// TrustPeers returns a Policy that admits a call when the peer that sent it
// is verified and named in names, whomever the call acts for: the peer is
// trusted to decide for the callers behind it (a server fanning its
// clients' events out to watchers, say). Prefer AcceptOnlyFrom, which
// checks those callers too; TrustPeers is the explicit choice to let a
// trusted peer act for anyone.
func TrustPeers(names ...string) Policy { return peerPolicy(names, admitPeer) }

// peerPolicy is a Policy that judges the peer of each call with check
// against its own copy of names; a call that carries no peer is refused,
// since a policy admits no one it cannot name.
func peerPolicy(names []string, check func(p Peer, names []string, method string) error) Policy {
	names = slices.Clone(names)
	return PolicyFunc(func(ctx context.Context, method string) error {
		p, ok := PeerFrom(ctx)
		if !ok {
			return fmt.Errorf("%w: %s: no peer identity", ErrAccessDenied, method)
		}
		return check(p, names, method)
	})
}

// admitAll admits a call for AcceptOnlyFrom: each party it acts for, then
// the peer itself.
func admitAll(p Peer, names []string, method string) error {
	for i, id := range p.ForwardedFor {
		if err := admit(id, names, method); err != nil {
			return fmt.Errorf("%w (peer %v forwards this call for it, as #%d of %d)", err, p.Identity(), i+1, len(p.ForwardedFor))
		}
	}
	return admitPeer(p, names, method)
}

// admitPeer admits a call for TrustPeers: the peer alone.
func admitPeer(p Peer, names []string, method string) error {
	return admit(p.Identity(), names, method)
}

// admit checks one party of a call against an AcceptOnlyFrom list.
func admit(id Identity, names []string, method string) error {
	if !id.Verified() {
		return fmt.Errorf("%w: %v may not call %s: its name was announced, not verified; "+
			"verify peers with mutual TLS or broker.WithAuthenticator", ErrUnverified, id, method)
	}
	if !slices.Contains(names, id.Name) {
		return fmt.Errorf("%w: %v may not call %s", ErrAccessDenied, id, method)
	}
	return nil
}

// MethodPolicies applies a Policy per method name. The entry "*" applies to
// methods without an entry of their own; a method with neither is allowed.
type MethodPolicies map[string]Policy

// Allow applies the policy for method.
func (m MethodPolicies) Allow(ctx context.Context, method string) error {
	if p, ok := m[method]; ok {
		return p.Allow(ctx, method)
	}
	if p, ok := m["*"]; ok {
		return p.Allow(ctx, method)
	}
	return nil
}
