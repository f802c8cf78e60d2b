package broker

import (
	"context"

	"github.com/tether-go/tether/remoteable"
)

// Call invokes method on any Caller (a *Ref, a *remote.Ref, ...) and returns
// the result as a T:
//
//	u, err := broker.Call[User](ctx, users, "Get", "alice")
func Call[T any](ctx context.Context, c remoteable.Caller, method string, args ...any) (T, error) {
	var r T
	err := c.Call(ctx, method, &r, args...)
	return r, err
}
