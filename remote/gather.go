package remote

import (
	"context"

	"github.com/tether-go/tether/remoteable"
)

// Result is one target's answer to Gather.
type Result[T any] struct {
	Index int // the target's position in the slice given to Gather
	Value T
	Err   error
}

// Gather calls method with args on every target at once and delivers each
// result on the returned channel as it arrives; a slow or dead target never
// delays the others. The channel is closed once every target has answered
// or failed. Bound the whole gather with ctx: when it ends, the targets that
// have not answered fail with ctx's error at once.
//
// To call every peer of a server, gather over their roots:
//
//	conns := srv.Conns()
//	targets := make([]remoteable.Caller, len(conns))
//	for i, c := range conns { targets[i] = c.Root() }
//	for res := range remote.Gather[Status](ctx, targets, "Status") { ... }
func Gather[T any](ctx context.Context, targets []remoteable.Caller, method string, args ...any) <-chan Result[T] {
	out := make(chan Result[T], len(targets)) // buffered: no sender ever blocks
	done := make(chan struct{})
	for i, t := range targets {
		go func() {
			var v T
			err := t.Call(ctx, method, &v, args...)
			out <- Result[T]{Index: i, Value: v, Err: err}
			done <- struct{}{}
		}()
	}
	go func() {
		for range targets {
			<-done
		}
		close(out)
	}()
	return out
}
