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
