// Package snapmark marks the context of the call that carries the first
// batch of a snapshot to a mirror, so that the sender's client
// interceptors see it as broker.CallSnapshot. The feed's subscriptions set
// the mark; the broker reads it, and only when the connection has client
// interceptors.
package snapmark

import "context"

// key is the context key of the mark.
type key struct{}

// With returns ctx marked: its Apply call starts a snapshot.
func With(ctx context.Context) context.Context { return context.WithValue(ctx, key{}, true) }

// Marked reports whether ctx is marked.
func Marked(ctx context.Context) bool {
	v, _ := ctx.Value(key{}).(bool)
	return v
}
