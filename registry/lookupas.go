package registry

import (
	"context"
	"fmt"

	"github.com/tether-go/tether/remoteable"
)

// Lookuper is what LookupAs looks a manager up in: a local *Registry
// (whose Lookup returns the manager, R = any) and a *remote.Registry
// (whose Lookup returns a lasting *remote.Ref, R = *remote.Ref) alike. The
// two Lookups return different types, so Lookuper is generic in what
// Lookup returns; Go infers R from the registry passed to LookupAs.
type Lookuper[R any] interface {
	Lookup(ctx context.Context, name string) (R, error)
}

// LookupAs looks the manager registered under name up in r and returns it
// as a T, an interface type, through remoteable.As: the manager itself
// when it is local and implements T, T's registered stub over the
// reference otherwise (a stub over a *remote.Ref lasts across outages).
//
//	users, err := registry.LookupAs[Users](ctx, reg, "users")            // local
//	users, err := registry.LookupAs[Users](ctx, cl.Registry(), "users")  // remote
//
// An unknown name is an error matching ErrNotFound; a manager that is not
// a T an error matching remoteable.ErrNoStub (no stub is registered for
// T: run tether gen) or remoteable.ErrNotCaller (a local manager that does
// not implement T).
func LookupAs[T any, R any](ctx context.Context, r Lookuper[R], name string) (T, error) {
	var zero T
	m, err := r.Lookup(ctx, name)
	if err != nil {
		return zero, err
	}
	t, err := remoteable.As[T](m)
	if err != nil {
		return zero, fmt.Errorf("manager %q: %w", name, err)
	}
	return t, nil
}
