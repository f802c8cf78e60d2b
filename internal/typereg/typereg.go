package typereg

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
)

// ReferenceableMarker is the interface implemented by every type that embeds
// remoteable.Referenceable. remoteable sets it in its init.
var ReferenceableMarker reflect.Type

// PeerKey is the context key under which the broker stores a call's
// remoteable.Peer.
type PeerKey struct{}

// ErrorEntry describes one registered error.
type ErrorEntry struct {
	Name  string
	Value error        // a sentinel matched with ==, or nil
	Type  reflect.Type // an error type matched by type, or nil
}

type tables struct {
	copyByName map[string]reflect.Type
	copyByType map[reflect.Type]string
	errByName  map[string]*ErrorEntry
	errByValue map[error]*ErrorEntry
	errByType  map[reflect.Type]*ErrorEntry
	generation uint64
}

var (
	mu  sync.Mutex
	cur atomic.Pointer[tables]
)

func init() {
	cur.Store(&tables{
		copyByName: map[string]reflect.Type{},
		copyByType: map[reflect.Type]string{},
		errByName:  map[string]*ErrorEntry{},
		errByValue: map[error]*ErrorEntry{},
		errByType:  map[reflect.Type]*ErrorEntry{},
	})
}

// update applies f to a copy of the tables and publishes it.
func update(f func(t *tables) error) error {
	mu.Lock()
	defer mu.Unlock()
	old := cur.Load()
	next := &tables{
		copyByName: clone(old.copyByName),
		copyByType: clone(old.copyByType),
		errByName:  clone(old.errByName),
		errByValue: clone(old.errByValue),
		errByType:  clone(old.errByType),
		generation: old.generation + 1,
	}
	if err := f(next); err != nil {
		return err
	}
	cur.Store(next)
	return nil
}

func clone[K comparable, V any](m map[K]V) map[K]V {
	n := make(map[K]V, len(m)+1)
	for k, v := range m {
		n[k] = v
	}
	return n
}

// Generation changes whenever a registration succeeds; caches of per-type
// facts compare it to know when to start again.
func Generation() uint64 { return cur.Load().generation }

// RegisterCopyable records that values of t travel by value under name.
func RegisterCopyable(name string, t reflect.Type) error {
	if name == "" {
		return errors.New("empty name")
	}
	switch t.Kind() {
	case reflect.Interface, reflect.Pointer, reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("%v cannot be a Copyable: register a concrete non-pointer type", t)
	}
	return update(func(tb *tables) error {
		if old, ok := tb.copyByName[name]; ok && old != t {
			return fmt.Errorf("name %q already registered for %v", name, old)
		}
		if old, ok := tb.copyByType[t]; ok && old != name {
			return fmt.Errorf("%v already registered as %q", t, old)
		}
		tb.copyByName[name] = t
		tb.copyByType[t] = name
		return nil
	})
}

// CopyableType returns the type registered under name.
func CopyableType(name string) (reflect.Type, bool) {
	t, ok := cur.Load().copyByName[name]
	return t, ok
}

// CopyableName returns the name t is registered under.
func CopyableName(t reflect.Type) (string, bool) {
	n, ok := cur.Load().copyByType[t]
	return n, ok
}

// RegisterErrorValue records a sentinel error under name.
func RegisterErrorValue(name string, err error) error {
	if name == "" || err == nil {
		return errors.New("empty name or nil error")
	}
	if !reflect.TypeOf(err).Comparable() {
		return fmt.Errorf("error value of type %T is not comparable", err)
	}
	return update(func(tb *tables) error {
		if old, ok := tb.errByName[name]; ok && old.Value != err {
			return fmt.Errorf("error name %q already registered", name)
		}
		e := &ErrorEntry{Name: name, Value: err}
		tb.errByName[name] = e
		tb.errByValue[err] = e
		return nil
	})
}

// RegisterErrorType records an error type under name.
func RegisterErrorType(name string, t reflect.Type) error {
	if name == "" {
		return errors.New("empty name")
	}
	return update(func(tb *tables) error {
		if old, ok := tb.errByName[name]; ok && old.Type != t {
			return fmt.Errorf("error name %q already registered", name)
		}
		if old, ok := tb.errByType[t]; ok && old.Name != name {
			return fmt.Errorf("error type %v already registered as %q", t, old.Name)
		}
		e := &ErrorEntry{Name: name, Type: t}
		tb.errByName[name] = e
		tb.errByType[t] = e
		return nil
	})
}

// ErrorByName returns the registration for name.
func ErrorByName(name string) (*ErrorEntry, bool) {
	e, ok := cur.Load().errByName[name]
	return e, ok
}

// FindError walks err's chain (depth first, as errors.Is does) and returns
// the registration of the first error in it that is registered, and that
// error, match; both are nil when none is. match is a member of the
// chain, not a failure of the search.
func FindError(err error) (entry *ErrorEntry, match error) {
	tb := cur.Load()
	walk(err, func(e error) bool {
		t := reflect.TypeOf(e)
		if t.Comparable() {
			if en, ok := tb.errByValue[e]; ok {
				entry, match = en, e
				return true
			}
		}
		if en, ok := tb.errByType[t]; ok {
			entry, match = en, e
			return true
		}
		return false
	})
	return entry, match
}

func walk(err error, visit func(error) bool) bool {
	for depth := 0; err != nil && depth < 100; depth++ {
		if visit(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, visit) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
