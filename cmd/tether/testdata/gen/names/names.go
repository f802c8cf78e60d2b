// Package names holds tether gen's golden case for parameter names the
// stub cannot use: missing, blank, or taken by the stub's own locals, by
// imports, or by the package's identifiers.
package names

import (
	"context"
	"time"
)

// Limit is a package-level name that a parameter must not shadow.
const Limit = 10

// Names has parameters the stub renames.
type Names interface {
	Unnamed(context.Context, string, int) error
	Blank(_ context.Context, _ string, a1 int) (string, error)
	Locals(c context.Context, s, r, err, args, v string) error
	Imports(ctx context.Context, context string, remoteable int, time time.Duration) error
	Package(ctx context.Context, Limit int, string string) error
	Tail(ctx context.Context, a0 string, _ ...int) error
}
