package broker

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// DescribeMethod is the method name every exported object answers with its
// Description. The broker answers it; the name cannot clash with a Go method.
const DescribeMethod = "tether.describe"

// Description is what a reference says about the object behind it: its Go
// type, its remotely callable methods, and the exported methods it declares
// that are not callable because of their shape, with the reason.
type Description struct {
	Type    string              `cbor:"type" json:"type"`
	Methods []MethodDescription `cbor:"methods" json:"methods"`
	Skipped []SkippedMethod     `cbor:"skipped,omitempty" json:"skipped,omitempty"`
	// Interfaces lists the interfaces registered with
	// remoteable.RegisterStub that the object implements, sorted by name.
	Interfaces []InterfaceDescription `cbor:"interfaces,omitempty" json:"interfaces,omitempty"`
}

// InterfaceDescription is a registered interface (remoteable.RegisterStub)
// that an object implements: its name as its package spells it
// ("users.Users") and its methods in Go syntax, as tether gen registered
// them ("Get(ctx context.Context, name string) (User, error)").
type InterfaceDescription struct {
	Name    string   `cbor:"name" json:"name"`
	Methods []string `cbor:"methods" json:"methods"`
}

// describeInterfaces lists the registered interfaces t implements.
func describeInterfaces(t reflect.Type) []InterfaceDescription {
	var out []InterfaceDescription
	for _, e := range typereg.Stubs() {
		if t.Implements(e.Iface) {
			out = append(out, InterfaceDescription{Name: goName(e.Iface.String()), Methods: slices.Clone(e.Methods)})
		}
	}
	return out
}

// signatureName is the name a method signature in Go syntax starts with.
func signatureName(sig string) string {
	name, _, _ := strings.Cut(sig, "(")
	return strings.TrimSpace(name)
}

// SkippedMethod is an exported method that cannot be called remotely
// because of its shape (its results, or a context.Context that is not its
// first parameter), and why. Methods that Tether or Go give a meaning
// (RemoteMethods, RemotePolicy, String, Error, ...), methods marked Local
// and methods promoted from an embedded field are not listed.
type SkippedMethod struct {
	Name   string `cbor:"name" json:"name"`
	Reason string `cbor:"reason" json:"reason"`
}

// Method returns the description of the named method.
func (d Description) Method(name string) (MethodDescription, bool) {
	for _, m := range d.Methods {
		if m.Name == name {
			return m, true
		}
	}
	return MethodDescription{}, false
}

// MethodDescription describes one remotely callable method.
type MethodDescription struct {
	Name        string            `cbor:"name" json:"name"`
	Params      []TypeDescription `cbor:"params" json:"params"` // after the context
	Variadic    bool              `cbor:"variadic,omitempty" json:"variadic,omitempty"`
	Result      *TypeDescription  `cbor:"result,omitempty" json:"result,omitempty"` // nil: only an error
	Idempotent  bool              `cbor:"idempotent,omitempty" json:"idempotent,omitempty"`
	ByReference bool              `cbor:"byReference,omitempty" json:"byReference,omitempty"`
}

// Kind says what a TypeDescription describes, in the words a JSON client
// needs: how a value of the type is written and read. Its values are the
// strings that travel in a Description ("int", "struct", ...), so they are
// part of the protocol and never change.
type Kind string

// The kinds of TypeDescription.
const (
	KindBool      Kind = "bool"      // a Go bool
	KindInt       Kind = "int"       // a signed integer of any width (Go says which)
	KindUint      Kind = "uint"      // an unsigned integer of any width
	KindFloat     Kind = "float"     // a float32 or float64
	KindString    Kind = "string"    // a Go string
	KindBytes     Kind = "bytes"     // a []byte, written in JSON as base64
	KindTime      Kind = "time"      // a time.Time, written in JSON as RFC 3339
	KindArray     Kind = "array"     // a slice or array of Elem (other than []byte)
	KindMap       Kind = "map"       // a map from Key to Elem
	KindStruct    Kind = "struct"    // a plain struct of Fields
	KindReference Kind = "reference" // an object sent by reference
	KindCopyable  Kind = "copyable"  // a registered Copyable, sent by value under Name
	KindCacheable Kind = "cacheable" // an observable model, received as a mirror
	KindAny       Kind = "any"       // an interface: the value's own type decides
	KindError     Kind = "error"     // the error interface
	KindCustom    Kind = "custom"    // a type with its own CBOR encoding
)

// TypeDescription describes a parameter or result type in a shape a JSON
// client can use; Kind says which shape.
//
// Elem is the element type of an array, the value type of a map and the
// entry value type of a cacheable; Key is the key type of a map and the
// entry key type of a cacheable. Fields lists the fields of a struct or a
// copyable's state in wire order; ToArray says they travel as an array in
// that order rather than as a map keyed by name. Nesting deeper than six
// levels is not described.
type TypeDescription struct {
	Go      string             `cbor:"go" json:"go"`
	Kind    Kind               `cbor:"kind" json:"kind"`
	Name    string             `cbor:"name,omitempty" json:"name,omitempty"` // a Copyable's registered name, or the interface a reference implements
	Elem    *TypeDescription   `cbor:"elem,omitempty" json:"elem,omitempty"`
	Key     *TypeDescription   `cbor:"key,omitempty" json:"key,omitempty"`
	Fields  []FieldDescription `cbor:"fields,omitempty" json:"fields,omitempty"`
	ToArray bool               `cbor:"toarray,omitempty" json:"toarray,omitempty"`
}

// FieldDescription is one field of a struct: its name on the wire (the
// cbor or json tag name, else the Go name) and its type. IntKey says the
// name is an integer that travels as a CBOR integer key (keyasint).
type FieldDescription struct {
	Name   string          `cbor:"name" json:"name"`
	Type   TypeDescription `cbor:"type" json:"type"`
	IntKey bool            `cbor:"intKey,omitempty" json:"intKey,omitempty"`
}

// Describe returns the Description of a local object.
func Describe(obj any) Description {
	if r, ok := obj.(*Ref); ok {
		if local, isLocal := r.Local(); isLocal {
			obj = local
		}
	}
	ot := objTypeOf(obj)
	d := Description{Type: goName(fmt.Sprintf("%T", obj))}
	for _, name := range ot.names {
		d.Methods = append(d.Methods, describeMethod(name, ot.methods[name]))
	}
	d.Skipped = slices.Clone(ot.skipped)
	if obj != nil {
		d.Interfaces = describeInterfaces(reflect.TypeOf(obj))
	}
	return d
}

// describeMethod describes one callable method: a variadic method's last
// parameter is an array of its element type, and a method that returns by
// reference has a reference for a result, whatever its Go type.
func describeMethod(name string, m *method) MethodDescription {
	md := MethodDescription{Name: name, Variadic: m.variadic, Idempotent: m.opts.Idempotent, ByReference: m.opts.ByReference}
	for _, p := range m.params {
		md.Params = append(md.Params, describeType(p, 0))
	}
	if m.variadic && len(md.Params) > 0 {
		last := &md.Params[len(md.Params)-1]
		elem := *last // all of it, ToArray included
		*last = TypeDescription{Go: "..." + elem.Go, Kind: KindArray, Elem: &elem}
	}
	if m.result != nil {
		rd := describeType(m.result, 0)
		if m.opts.ByReference {
			rd = TypeDescription{Go: rd.Go, Kind: KindReference}
		}
		md.Result = &rd
	}
	return md
}

// Describe asks the object behind r for its Description.
func (r *Ref) Describe(ctx context.Context) (Description, error) {
	if r.c == nil {
		return Describe(r.obj), nil
	}
	var d Description
	err := r.Call(ctx, DescribeMethod, &d)
	return d, err
}

var timeType = reflect.TypeFor[time.Time]()

// importPath matches the import path Go spells out in a generic type's
// arguments (cache.Map[string,github.com/x/y.User]).
var importPath = regexp.MustCompile(`[\w.~-]+(/[\w.~-]+)*/([\w~-]+)\.`)

// goName shortens the import paths in a type name to their last element,
// as Go writes the type's own package: cache.Map[string,y.User].
func goName(s string) string {
	if !strings.Contains(s, "/") {
		return s
	}
	return importPath.ReplaceAllString(s, "$2.")
}

// maxDescribeDepth bounds nesting, for recursive types.
const maxDescribeDepth = 6

// describeType describes the type ti: by how the codec treats it (a
// reference, a Copyable, a model, ...) and, for plain data, by its Go type.
func describeType(ti *typeInfo, depth int) TypeDescription {
	d := TypeDescription{Go: goName(ti.t.String())}
	switch ti.kind {
	case kRef, kObject, kObjectValue:
		d.Kind = KindReference
	case kCborTag:
		d.Kind = KindCustom
	case kInterface:
		return describeInterface(ti.t, d)
	case kCacheable:
		return describeCacheable(ti.t, d, depth)
	case kCopyable:
		return describeCopyable(ti, d, depth)
	case kPtr:
		return describePointee(ti.elem, d, depth)
	default:
		return describeData(ti, d, depth)
	}
	return d
}

// describeInterface describes an interface type: error as an error; an
// interface with a registered stub (tether gen) as a reference, named in
// Name, since what is passed for it must be a reference to an object
// implementing it; any other as any, where the value's own type decides.
func describeInterface(t reflect.Type, d TypeDescription) TypeDescription {
	_, stub := typereg.Stub(t)
	switch {
	case t == errorType:
		d.Kind = KindError
	case stub:
		d.Kind, d.Name = KindReference, d.Go
	default:
		d.Kind = KindAny
	}
	return d
}

// describePointee describes a pointer as the value it points to, under the
// pointer's Go name: the wire does not tell them apart.
func describePointee(elem *typeInfo, d TypeDescription, depth int) TypeDescription {
	inner := describeType(elem, depth)
	inner.Go = d.Go
	return inner
}

// describeCacheable describes a model by the key and value types of its
// entries, when it declares them (remoteable.CacheTypes); it is received as
// a mirror (see package cache).
func describeCacheable(t reflect.Type, d TypeDescription, depth int) TypeDescription {
	d.Kind = KindCacheable
	if !t.Implements(cacheTypes) || depth >= maxDescribeDepth {
		return d
	}
	kt, vt := reflect.Zero(t).Interface().(remoteable.CacheTypes).CacheTypes()
	if kt != nil && vt != nil {
		k, e := describeType(infoOf(kt), depth+1), describeType(infoOf(vt), depth+1)
		d.Key, d.Elem = &k, &e
	}
	return d
}

// describeCopyable describes a Copyable by its registered name and the
// fields of its state.
func describeCopyable(ti *typeInfo, d TypeDescription, depth int) TypeDescription {
	d.Kind, d.Name = KindCopyable, ti.name
	if depth < maxDescribeDepth {
		st := describeType(ti.state, depth+1)
		d.Fields, d.ToArray = st.Fields, st.ToArray
	}
	return d
}

// scalarKinds are the kinds of the Go types that describe themselves by
// their reflect.Kind alone.
var scalarKinds = map[reflect.Kind]Kind{
	reflect.Bool: KindBool,
	reflect.Int:  KindInt, reflect.Int8: KindInt, reflect.Int16: KindInt, reflect.Int32: KindInt, reflect.Int64: KindInt,
	reflect.Uint: KindUint, reflect.Uint8: KindUint, reflect.Uint16: KindUint, reflect.Uint32: KindUint, reflect.Uint64: KindUint, reflect.Uintptr: KindUint,
	reflect.Float32: KindFloat, reflect.Float64: KindFloat,
	reflect.String: KindString,
}

// describeData describes a plain Go type: time and types with their own
// CBOR encoding first, then by its reflect.Kind; a type JSON has no shape
// for (a channel, a complex number, ...) is custom.
func describeData(ti *typeInfo, d TypeDescription, depth int) TypeDescription {
	t := ti.t
	switch {
	case t == timeType:
		d.Kind = KindTime
		return d
	case ti.kind == kPure && implementsAny(t, cborMarshaler, cborUnmarshal):
		d.Kind = KindCustom
		return d
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describePointee(infoOf(t.Elem()), d, depth)
	case reflect.Slice, reflect.Array:
		return describeList(t, d, depth)
	case reflect.Map:
		return describeMap(t, d, depth)
	case reflect.Struct:
		return describeStruct(ti, d, depth)
	}
	d.Kind = KindCustom
	if k, ok := scalarKinds[t.Kind()]; ok {
		d.Kind = k
	}
	return d
}

// describeList describes a slice or an array: a []byte is bytes (base64 in
// JSON), anything else an array of its element type.
func describeList(t reflect.Type, d TypeDescription, depth int) TypeDescription {
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		d.Kind = KindBytes
		return d
	}
	d.Kind = KindArray
	if depth < maxDescribeDepth {
		e := describeType(infoOf(t.Elem()), depth+1)
		d.Elem = &e
	}
	return d
}

// describeMap describes a map by its key and value types.
func describeMap(t reflect.Type, d TypeDescription, depth int) TypeDescription {
	d.Kind = KindMap
	if depth < maxDescribeDepth {
		k, e := describeType(infoOf(t.Key()), depth+1), describeType(infoOf(t.Elem()), depth+1)
		d.Key, d.Elem = &k, &e
	}
	return d
}

// describeStruct describes a struct by its fields in wire order, laid out
// as the codec lays them out.
func describeStruct(ti *typeInfo, d TypeDescription, depth int) TypeDescription {
	d.Kind = KindStruct
	if depth >= maxDescribeDepth {
		return d
	}
	st := structLayout(ti)
	d.ToArray = st.toArray
	for _, f := range st.fields {
		d.Fields = append(d.Fields, FieldDescription{Name: f.name, Type: describeType(infoOf(f.info.t), depth+1), IntKey: f.intKey})
	}
	return d
}

// structLayout returns ti with its fields laid out: a plain struct's
// typeInfo has none, since fxamacker encodes it, so they are worked out
// here the same way the codec's walker does.
func structLayout(ti *typeInfo) *typeInfo {
	if ti.kind == kStruct {
		return ti
	}
	st := &typeInfo{t: ti.t}
	buildMu.Lock()
	b := builder{cache: &infoCache{}, pure: map[reflect.Type]bool{}, building: map[reflect.Type]*typeInfo{}}
	b.structFields(st)
	buildMu.Unlock()
	return st
}
