package remoteable

// TEMPORARY: a stand-in for the runtime part A of issue 16 builds, so that
// the generator's output compiles and runs before A's branch lands. The
// integrator drops this file in favour of A's version.

import (
	"fmt"
	"reflect"
	"sync"
)

// Stub is implemented by every generated stub: it gives back the reference
// the stub calls through.
type Stub interface{ TetherCaller() Caller }

// stubs maps an interface type to the function that wraps a Caller in its
// generated stub.
var stubs sync.Map // reflect.Type -> func(Caller) any

// RegisterStub records wrap as the stub of interface T; methods lists each
// method of T in Go syntax.
func RegisterStub[T any](wrap func(Caller) T, methods ...string) {
	stubs.Store(reflect.TypeFor[T](), func(c Caller) any { return wrap(c) })
}

// As returns v as a T: v itself when it implements T, else the registered
// stub of T over the Caller v is or wraps.
func As[T any](v any) (T, error) {
	var zero T
	if t, ok := v.(T); ok {
		return t, nil
	}
	c, ok := v.(Caller)
	if s, isStub := v.(Stub); isStub {
		c, ok = s.TetherCaller(), true
	}
	if !ok {
		return zero, fmt.Errorf("remoteable: %T is neither a %v nor a Caller", v, reflect.TypeFor[T]())
	}
	w, found := stubs.Load(reflect.TypeFor[T]())
	if !found {
		return zero, fmt.Errorf("remoteable: no stub registered for %v: run tether gen", reflect.TypeFor[T]())
	}
	return w.(func(Caller) any)(c).(T), nil
}
