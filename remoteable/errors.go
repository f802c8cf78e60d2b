package remoteable

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/tether-go/tether/internal/typereg"
)

// ErrAccessDenied is returned to a caller whom an object's Policy refused.
var ErrAccessDenied = errors.New("tether: access denied")

// ErrUnverified is returned to a caller whom a policy refused because a
// party to the call has a name nobody verified (see Identity). It matches
// ErrAccessDenied too.
var ErrUnverified error = unverified{}

type unverified struct{}

func (unverified) Error() string { return "tether: access denied: identity not verified" }

// Is makes ErrUnverified match ErrAccessDenied.
func (unverified) Is(target error) bool { return target == ErrAccessDenied }

func init() {
	RegisterError("tether.access-denied", ErrAccessDenied)
	RegisterError("tether.unverified", ErrUnverified)
	RegisterError("tether.no-stub", ErrNoStub)
	RegisterError("tether.not-a-reference", ErrNotCaller)
	RegisterError("context.canceled", context.Canceled)
	RegisterError("context.deadline-exceeded", context.DeadlineExceeded)
}

// RegisterError records a sentinel error value under name. When a handler
// returns an error whose chain contains err, the caller receives an error
// for which errors.Is(received, err) holds, with the handler's full message.
// Both sides must register the same name. It panics if name is taken by a
// different error or err is not comparable.
func RegisterError(name string, err error) {
	if e := typereg.RegisterErrorValue(name, err); e != nil {
		panic(fmt.Sprintf("remoteable: RegisterError(%q): %v", name, e))
	}
}

// RegisterErrorType records an error type under name. When a handler returns
// an error whose chain contains a value of type E, its exported fields travel
// with it and the caller can recover it with errors.As. E is usually a
// pointer to a struct type.
func RegisterErrorType[E error](name string) {
	if e := typereg.RegisterErrorType(name, reflect.TypeFor[E]()); e != nil {
		panic(fmt.Sprintf("remoteable: RegisterErrorType[%v](%q): %v", reflect.TypeFor[E](), name, e))
	}
}
