// Package refused holds the interfaces tether gen refuses, one shape each;
// the test runs the generator on each and on all at once.
package refused

import (
	"context"
	"unsafe"

	"github.com/tether-go/tether/remoteable"
)

// NoError has a method whose failure the caller could not see.
type NoError interface{ Get(ctx context.Context) int }

// NoResult has a method without results.
type NoResult interface{ Fire() }

// ThreeResults has a method with three results.
type ThreeResults interface {
	Get(ctx context.Context) (int, string, error)
}

// ErrorFirst returns its error first.
type ErrorFirst interface{ Get() (error, int) }

// CtxSecond takes its context second.
type CtxSecond interface {
	Get(name string, ctx context.Context) error
}

// Unexported has a method a peer cannot call.
type Unexported interface{ get() error }

// HasTetherCaller has a method named like the stub's own.
type HasTetherCaller interface {
	TetherCaller() remoteable.Caller
}

// Generic has type parameters.
type Generic[T any] interface{ Get() (T, error) }

// Number lists types: it is a constraint.
type Number interface{ ~int | ~float64 }

// Funcs takes a func.
type Funcs interface{ Do(f func()) error }

// Chans returns a chan.
type Chans interface{ Stream() (<-chan int, error) }

// Unsafe takes an unsafe.Pointer.
type Unsafe interface{ Ptr(p unsafe.Pointer) error }

// WithFunc is a struct with an exported func field.
type WithFunc struct {
	Name string
	Hook func(string)
}

// StructFunc takes a struct that holds a func, behind a slice.
type StructFunc interface{ Put(xs []WithFunc) error }

// Several has several methods that cannot be remote: all are listed.
type Several interface {
	A(ctx context.Context)
	B(ch chan string) error
	C(ctx context.Context) (int, error)
}

// Plain is not an interface.
type Plain struct{}

// Alias stands for an interface.
type Alias = Funcs

// usersStub is taken: the stub of an interface named Users would clash.
type usersStub struct{}

// Users is fine, but its stub's name is taken.
type Users interface{ Get() error }
