package remoteable

import (
	"context"
	"fmt"
	"slices"
)

// Policy decides whether the peer behind a call may invoke a method. ctx is
// the call's context: PeerFrom(ctx) tells who is calling. A non-nil error
// refuses the call and is what the caller receives; wrap ErrAccessDenied so
// that the caller can recognise it.
type Policy interface {
	Allow(ctx context.Context, method string) error
}

// Guarded is implemented by objects that restrict who may call them. The
// broker consults the policy before every remote call on the object; calls
// made in process are not checked.
type Guarded interface {
	RemotePolicy() Policy
}

// PolicyFunc adapts a function to a Policy.
type PolicyFunc func(ctx context.Context, method string) error

// Allow calls f.
func (f PolicyFunc) Allow(ctx context.Context, method string) error { return f(ctx, method) }

// AcceptOnlyFrom returns a Policy that admits only peers that announced one
// of the given names in their handshake (the "accept only from" rule of an
// agent/logic pair). Combine it with a shared token or mutual TLS: a name is
// only as trustworthy as the connection's authentication.
func AcceptOnlyFrom(names ...string) Policy {
	names = slices.Clone(names)
	return PolicyFunc(func(ctx context.Context, method string) error {
		p, ok := PeerFrom(ctx)
		if !ok {
			return fmt.Errorf("%w: %s: no peer identity", ErrAccessDenied, method)
		}
		if slices.Contains(names, p.Name) {
			return nil
		}
		return fmt.Errorf("%w: peer %q may not call %s", ErrAccessDenied, p.Name, method)
	})
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
