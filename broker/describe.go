package broker

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

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

// TypeDescription describes a parameter or result type in a shape a JSON
// client can use. Kind is one of bool, int, uint, float, string, bytes,
// time, array, map, struct, reference, copyable, cacheable, any, error,
// custom (a type with its own CBOR encoding).
//
// Elem is the element type of an array, the value type of a map and the
// entry value type of a cacheable; Key is the key type of a map and the
// entry key type of a cacheable. Fields lists the fields of a struct or a
// copyable's state in wire order; ToArray says they travel as an array in
// that order rather than as a map keyed by name. Nesting deeper than six
// levels is not described.
type TypeDescription struct {
	Go      string             `cbor:"go" json:"go"`
	Kind    string             `cbor:"kind" json:"kind"`
	Name    string             `cbor:"name,omitempty" json:"name,omitempty"` // a Copyable's registered name
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
		m := ot.methods[name]
		md := MethodDescription{Name: name, Variadic: m.variadic, Idempotent: m.opts.Idempotent, ByReference: m.opts.ByReference}
		for _, p := range m.params {
			md.Params = append(md.Params, describeType(p, 0))
		}
		if m.variadic && len(md.Params) > 0 {
			last := &md.Params[len(md.Params)-1]
			*last = TypeDescription{Go: "..." + last.Go, Kind: "array", Elem: &TypeDescription{Go: last.Go, Kind: last.Kind, Name: last.Name, Elem: last.Elem, Key: last.Key, Fields: last.Fields}}
		}
		if m.result != nil {
			rd := describeType(m.result, 0)
			if m.opts.ByReference {
				rd = TypeDescription{Go: rd.Go, Kind: "reference"}
			}
			md.Result = &rd
		}
		d.Methods = append(d.Methods, md)
	}
	d.Skipped = slices.Clone(ot.skipped)
	return d
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

func describeType(ti *typeInfo, depth int) TypeDescription {
	t := ti.t
	d := TypeDescription{Go: goName(t.String())}
	switch ti.kind {
	case kRef, kObject, kObjectValue:
		d.Kind = "reference"
		return d
	case kCborTag:
		d.Kind = "custom"
		return d
	case kCacheable:
		d.Kind = "cacheable" // received as a mirror (see package cache)
		if t.Implements(cacheTypes) && depth < maxDescribeDepth {
			kt, vt := reflect.Zero(t).Interface().(remoteable.CacheTypes).CacheTypes()
			if kt != nil && vt != nil {
				k, e := describeType(infoOf(kt), depth+1), describeType(infoOf(vt), depth+1)
				d.Key, d.Elem = &k, &e
			}
		}
		return d
	case kInterface:
		d.Kind = "any"
		if t == errorType {
			d.Kind = "error"
		}
		return d
	case kCopyable:
		d.Kind, d.Name = "copyable", ti.name
		if depth < maxDescribeDepth {
			st := describeType(ti.state, depth+1)
			d.Fields, d.ToArray = st.Fields, st.ToArray
		}
		return d
	case kPtr:
		inner := describeType(ti.elem, depth)
		inner.Go = d.Go
		return inner
	}
	if t == timeType {
		d.Kind = "time"
		return d
	}
	if ti.kind == kPure && implementsAny(t, cborMarshaler, cborUnmarshal) {
		d.Kind = "custom"
		return d
	}
	switch t.Kind() {
	case reflect.Bool:
		d.Kind = "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.Kind = "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.Kind = "uint"
	case reflect.Float32, reflect.Float64:
		d.Kind = "float"
	case reflect.String:
		d.Kind = "string"
	case reflect.Pointer:
		inner := describeType(infoOf(t.Elem()), depth)
		inner.Go = d.Go
		return inner
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && t.Kind() == reflect.Slice {
			d.Kind = "bytes"
			return d
		}
		d.Kind = "array"
		if depth < maxDescribeDepth {
			e := describeType(infoOf(t.Elem()), depth+1)
			d.Elem = &e
		}
	case reflect.Map:
		d.Kind = "map"
		if depth < maxDescribeDepth {
			k, e := describeType(infoOf(t.Key()), depth+1), describeType(infoOf(t.Elem()), depth+1)
			d.Key, d.Elem = &k, &e
		}
	case reflect.Struct:
		d.Kind = "struct"
		if depth < maxDescribeDepth {
			st := ti
			if st.kind != kStruct { // a plain struct: lay its fields out the same way
				st = &typeInfo{t: t}
				buildMu.Lock()
				b := builder{cache: &infoCache{}, pure: map[reflect.Type]bool{}, building: map[reflect.Type]*typeInfo{}}
				b.structFields(st)
				buildMu.Unlock()
			}
			d.ToArray = st.toArray
			for _, f := range st.fields {
				d.Fields = append(d.Fields, FieldDescription{Name: f.name, Type: describeType(infoOf(f.info.t), depth+1), IntKey: f.intKey})
			}
		}
	default:
		d.Kind = "custom"
	}
	return d
}
