// Package replay marks the errors of references that can never be
// obtained again: a remote.Ref returned by a call not declared safe to
// repeat, after the link it was obtained on dropped. The gateway tells its
// clients such a handle has expired (rather than that the server is out of
// reach) by this mark; the error's message and class stay what they were.
package replay

import "errors"

// ErrNotReplayable matches, through errors.Is, an error Mark marked.
var ErrNotReplayable = errors.New("tether: the call that obtained the reference is not replayed")

// Mark returns err marked as the error of a reference that can never be
// obtained again; it reads and unwraps as err does.
func Mark(err error) error { return marked{err} }

// marked is an error Mark marked.
type marked struct{ error }

// Is reports whether target is ErrNotReplayable; errors.Is goes on
// through Unwrap.
func (m marked) Is(target error) bool { return target == ErrNotReplayable }

// Unwrap returns the error that was marked.
func (m marked) Unwrap() error { return m.error }
