package linkwait

import "context"

// Key is the context key of the mark. The broker answers it from a
// handler's context when the call arrived marked.
type Key struct{}

// With returns ctx marked: its calls wait for the link.
func With(ctx context.Context) context.Context {
	return context.WithValue(ctx, Key{}, true)
}

// Wanted reports whether ctx is marked.
func Wanted(ctx context.Context) bool {
	v, _ := ctx.Value(Key{}).(bool)
	return v
}
