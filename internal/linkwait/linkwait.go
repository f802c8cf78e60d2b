// Package linkwait marks a context whose calls wait for a link that is
// down, instead of failing at once. remote.WaitForLink sets the mark; the
// broker sends it with every call made under it (the call extension
// "wait for links", docs/protocol.md) and puts it on the handler's
// context on the far side, so that a relay forwarding the call waits for
// its own upstream link too, bounded by the call's deadline.
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
