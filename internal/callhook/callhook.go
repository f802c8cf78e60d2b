// Package callhook lets a package above the broker hold back the reply to a
// call until something it started during the call is done. The cache
// package uses it for read-your-writes: a call that changed a model answers
// only after the caller's mirrors on the same connection hold the change.
//
// The broker calls Begin before a handler runs and End after it returns,
// before the reply is sent. A hook must make both cheap for connections it
// has nothing to do with.
package callhook

import (
	"context"
	"sync/atomic"
)

// Hook is implemented by the package that holds replies back.
type Hook interface {
	// Begin is called before a handler on conn runs, with the object the
	// call is addressed to. What it returns is passed to End; nil means
	// nothing to wait for.
	Begin(conn, target any) any
	// End is called after the handler returned and before its reply is
	// sent. It returns when the reply may go, or when ctx ends.
	End(ctx context.Context, conn any, token any)
}

var hook atomic.Pointer[Hook]

// Set installs h. Only one hook is supported; a later Set replaces it.
func Set(h Hook) { hook.Store(&h) }

// Begin calls the installed hook's Begin, if any.
func Begin(conn, target any) any {
	h := hook.Load()
	if h == nil {
		return nil
	}
	return (*h).Begin(conn, target)
}

// End calls the installed hook's End when Begin returned something.
func End(ctx context.Context, conn any, token any) {
	if token == nil {
		return
	}
	if h := hook.Load(); h != nil {
		(*h).End(ctx, conn, token)
	}
}
