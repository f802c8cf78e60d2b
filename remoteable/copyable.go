package remoteable

import (
	"fmt"
	"reflect"

	"github.com/tether-go/tether/internal/typereg"
)

// RegisterCopyable records that values of type T travel by value under name.
// On the far side they decode to T again, also into an interface value
// (any), inside slices and maps, and they can be sent on to a next hop.
//
// The name is what crosses the wire, so both sides must register the same
// name for the same shape of data; a name the receiver has not registered is
// an error, never an instantiation of some other type. Register in an init
// function, before any connection uses the type. It panics if name or T is
// already registered differently, or if T is an interface or pointer type.
func RegisterCopyable[T any](name string) {
	if err := typereg.RegisterCopyable(name, reflect.TypeFor[T]()); err != nil {
		panic(fmt.Sprintf("remoteable: RegisterCopyable[%v](%q): %v", reflect.TypeFor[T](), name, err))
	}
}
