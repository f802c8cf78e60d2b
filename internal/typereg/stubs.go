package typereg

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrNoStub and ErrNotCaller are remoteable's sentinels of the same names;
// they live here so that Convert, which the broker and package remote call
// too, can wrap them.
var (
	ErrNoStub    = errors.New("tether: no stub registered")
	ErrNotCaller = errors.New("tether: not a reference")
)

// CallerType and StubType are remoteable.Caller and remoteable.Stub;
// remoteable sets them in its init.
var CallerType, StubType reflect.Type

// StubEntry is one interface registered with remoteable.RegisterStub.
type StubEntry struct {
	Iface reflect.Type // the interface type T
	// Wrap gives a remoteable.Caller the face of T: it returns a T, boxed.
	Wrap    func(caller any) any
	Methods []string // T's methods in Go syntax, as tether gen prints them
}

// stubTable is the registered stubs, copy-on-write like the other tables.
type stubTable struct {
	byIface map[reflect.Type]*StubEntry
	list    []*StubEntry // sorted by the interface's name
}

var (
	stubMu sync.Mutex
	stubs  atomic.Pointer[stubTable]
)

// RegisterStub records e. It refuses a type that is not an interface, the
// empty interface, error, and an interface registered already.
func RegisterStub(e *StubEntry) error {
	switch {
	case e.Iface == nil || e.Iface.Kind() != reflect.Interface:
		return fmt.Errorf("%v is not an interface type: register the interface the stub implements", e.Iface)
	case e.Iface.NumMethod() == 0 || e.Iface == reflect.TypeFor[error]():
		return fmt.Errorf("%v cannot have a stub: it is decoded by the value's own type", e.Iface)
	case e.Wrap == nil:
		return errors.New("nil wrap function")
	}
	stubMu.Lock()
	defer stubMu.Unlock()
	old := stubs.Load()
	next := &stubTable{byIface: map[reflect.Type]*StubEntry{}}
	if old != nil {
		if _, dup := old.byIface[e.Iface]; dup {
			return fmt.Errorf("a stub for %v is registered already", e.Iface)
		}
		next.byIface = clone(old.byIface)
		next.list = slices.Clone(old.list)
	}
	next.byIface[e.Iface] = e
	next.list = append(next.list, e)
	slices.SortFunc(next.list, func(a, b *StubEntry) int { return compareNames(a.Iface, b.Iface) })
	stubs.Store(next)
	return nil
}

// compareNames orders interface types by their Go name, then import path,
// so that Describe lists them in a stable order.
func compareNames(a, b reflect.Type) int {
	if c := cmp.Compare(a.String(), b.String()); c != 0 {
		return c
	}
	return cmp.Compare(a.PkgPath(), b.PkgPath())
}

// Stub returns the registration of interface type t.
func Stub(t reflect.Type) (*StubEntry, bool) {
	tb := stubs.Load()
	if tb == nil {
		return nil, false
	}
	e, ok := tb.byIface[t]
	return e, ok
}

// Stubs returns every registration, sorted by the interface's name. The
// slice is shared: do not change it.
func Stubs() []*StubEntry {
	if tb := stubs.Load(); tb != nil {
		return tb.list
	}
	return nil
}

// local is implemented by *broker.Ref: Local returns the object a
// reference to this process's own object stands for.
type local interface{ Local() (any, bool) }

// Convert returns x as a value of the interface type t: x itself when it
// implements t; the object a local reference stands for when that does;
// t's registered stub over x when x is a Caller, or over the Caller of a
// stub of another interface. Otherwise the error matches ErrNoStub (t has
// no stub) or ErrNotCaller (x is neither a t nor a reference); a nil x is
// an error too.
func Convert(t reflect.Type, x any) (reflect.Value, error) {
	if x == nil {
		return reflect.Value{}, fmt.Errorf("%w: nil is not a %v", ErrNotCaller, t)
	}
	xv := reflect.ValueOf(x)
	xt := xv.Type()
	if IsNil(x) {
		return reflect.Value{}, fmt.Errorf("%w: a nil %v is not a %v", ErrNotCaller, xt, t)
	}
	if xt.Implements(t) {
		return xv, nil
	}
	if l, ok := x.(local); ok {
		if obj, isLocal := l.Local(); isLocal && obj != nil && reflect.TypeOf(obj).Implements(t) {
			return reflect.ValueOf(obj), nil
		}
	}
	c := x
	if StubType != nil && xt.Implements(StubType) {
		c = xv.MethodByName("TetherCaller").Call(nil)[0].Interface()
	}
	if c == nil || CallerType == nil || !reflect.TypeOf(c).Implements(CallerType) {
		return reflect.Value{}, fmt.Errorf("%w: %T does not implement %v and is not a reference (a remoteable.Caller such as *broker.Ref or *remote.Ref, or a stub)",
			ErrNotCaller, x, t)
	}
	return wrap(t, c)
}

// IsNil reports whether x is nil or holds a nil pointer, map, slice,
// function or channel: a typed nil that implements an interface still
// has nothing behind it, so As and Convert refuse it as they refuse nil.
func IsNil(x any) bool {
	if x == nil {
		return true
	}
	switch v := reflect.ValueOf(x); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// wrap gives the Caller c the face of t through t's registered stub.
func wrap(t reflect.Type, c any) (reflect.Value, error) {
	e, ok := Stub(t)
	if !ok {
		return reflect.Value{}, NoStubError(t)
	}
	s := e.Wrap(c)
	if s == nil {
		return reflect.Value{}, fmt.Errorf("%w: the stub registered for %v returned nil", ErrNoStub, t)
	}
	return reflect.ValueOf(s), nil
}

// NoStubError is the error for an interface t without a registered stub:
// it says which command writes one.
func NoStubError(t reflect.Type) error {
	return fmt.Errorf("%w for %v: run `tether gen -type %s` in its package (%s)", ErrNoStub, t, bareName(t), t.PkgPath())
}

// bareName is t's name without its type arguments, as tether gen -type
// takes it.
func bareName(t reflect.Type) string {
	n := t.Name()
	for i := 0; i < len(n); i++ {
		if n[i] == '[' {
			return n[:i]
		}
	}
	return n
}
