package remoteable

import (
	"fmt"
	"reflect"

	"github.com/tether-go/tether/internal/typereg"
)

// Stub is implemented by the typed stubs tether gen writes: the face of an
// interface over a Caller. TetherCaller returns the Caller the stub wraps.
//
// A stub travels exactly as the Caller it wraps: sent to a peer (as an
// argument, a result, or inside an any, a slice, a map or a struct), a
// stub over a *broker.Ref is that reference (and arrives as the original
// object when it goes back to the process that owns it), and a stub over a
// *remote.Ref is that lasting reference.
type Stub interface{ TetherCaller() Caller }

// ErrNoStub is matched by the error for an interface type that has no
// registered stub, from As and from decoding a reference into a value of
// that interface type. Its message names the interface and says how to
// write the stub: "no stub registered for users.Users: run `tether gen
// -type Users` in its package".
var ErrNoStub = typereg.ErrNoStub

// ErrNotCaller is matched by the error from As (and from decoding into an
// interface type) for a value that neither implements the interface nor
// is a reference: not a Caller (*broker.Ref, *remote.Ref) nor a Stub. A
// nil value matches it too.
var ErrNotCaller = typereg.ErrNotCaller

// init tells typereg the types Convert checks values against.
func init() {
	typereg.CallerType = reflect.TypeFor[Caller]()
	typereg.StubType = reflect.TypeFor[Stub]()
}

// RegisterStub records wrap as the way to give a Caller the face of the
// interface T (T must be an interface type; registering T twice panics, as
// RegisterCopyable does for a name). methods are T's methods in Go syntax,
// one per method, as tether gen prints them (e.g.
// "Get(ctx context.Context, name string) (User, error)"); Describe and
// `tether ls` show them.
//
// With T registered, a reference decoded into a value of type T (a handler
// parameter, a reply, a struct field, an element of a slice) arrives as
// wrap over the reference, and As[T] converts a Caller into a T. Register
// in an init function, as the code tether gen writes does.
func RegisterStub[T any](wrap func(Caller) T, methods ...string) {
	t := reflect.TypeFor[T]()
	e := &typereg.StubEntry{Iface: t, Methods: append([]string(nil), methods...)}
	if wrap != nil {
		e.Wrap = func(c any) any { return wrap(c.(Caller)) }
	}
	if err := typereg.RegisterStub(e); err != nil {
		panic(fmt.Sprintf("remoteable: RegisterStub[%v]: %v", t, err))
	}
}

// As returns v as a T: v itself when it implements T (a local object, or a
// stub of T); the object a *broker.Ref to this process's own object stands
// for, when it implements T; the registered stub of T over v's Caller when
// v is a Caller (*broker.Ref, *remote.Ref) or a Stub of another interface.
// Otherwise it returns an error naming T and what is missing, matching
// ErrNoStub when no stub is registered for T and ErrNotCaller when v is
// neither a T nor a reference. A nil v, or a typed nil (a nil pointer,
// map, slice, function or channel, even one whose type implements T), is
// an error too (ErrNotCaller): a T with nothing behind it would only fail
// later, at its first call.
//
// A stub over a *remote.Ref keeps the reference's lasting behaviour: it
// obtains its target again after an outage, and a result of interface type
// that comes through it is a stub over a *remote.Ref derived from it.
func As[T any](v any) (T, error) {
	var zero T
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Interface {
		return zero, fmt.Errorf("remoteable.As[%v]: %v is not an interface type", t, t)
	}
	if x, ok := v.(T); ok && !typereg.IsNil(v) {
		return x, nil
	}
	rv, err := typereg.Convert(t, v)
	if err != nil {
		return zero, err
	}
	return rv.Interface().(T), nil
}
