package broker

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/tether-go/tether/internal/cborx"
)

// How a CBOR map fits a Go struct (docs/protocol.md, "Values"):
//
//  1. A key names a field by the field's CBOR name (its cbor tag, else its
//     json tag, else its Go name), an exact match first, else one that
//     differs only in case; a keyasint field by its integer key.
//  2. Keys that name no field are skipped: a newer peer that added a field
//     keeps working with an older one.
//  3. Fields that no key names keep their zero value: an older peer that
//     lacks a field keeps working with a newer one.
//  4. A value of the wrong type for its field is an error naming the field.
//  5. A map with at least one key that names none of the fields of a struct
//     that has some is an error naming the struct type, its fields and the
//     keys sent: the two sides disagree on the type, and decoding it would
//     hand over a zero value. An empty map, and any map for a struct
//     without fields, fit.

// noFieldError reports a map that shares no field with the struct it was
// to be decoded into (rule 5).
type noFieldError struct {
	t      reflect.Type
	keys   []string // the keys sent, as text
	fields []string // the struct's field names
}

// maxNamesShown bounds how many keys and fields a noFieldError lists.
const maxNamesShown = 8

func (e *noFieldError) Error() string {
	return fmt.Sprintf("a map with keys %s shares no field with %v (fields %s): the sender's type is not the receiver's; "+
		"send a value with at least one of %v's fields (names match ignoring case)",
		listNames(e.keys), e.t, listNames(e.fields), e.t)
}

// sent describes what the sender sent, for messages that add context.
func (e *noFieldError) sent() string { return "a map with keys " + listNames(e.keys) }

func listNames(names []string) string {
	if len(names) > maxNamesShown {
		return strings.Join(names[:maxNamesShown], ", ") + fmt.Sprintf(", ... (%d in all)", len(names))
	}
	return strings.Join(names, ", ")
}

func newNoFieldError(ti *typeInfo, keys []string) *noFieldError {
	slices.Sort(keys) // in the order a reader looks for them, not the map's
	e := &noFieldError{t: ti.t, keys: keys}
	for i := range ti.fields {
		e.fields = append(e.fields, ti.fields[i].name)
	}
	return e
}

// fieldIndex returns the field a text key names (rule 1), or -1.
func (ti *typeInfo) fieldIndex(name []byte) int {
	if j, ok := ti.byName[string(name)]; ok {
		return j
	}
	for j := range ti.fields {
		if !ti.fields[j].intKey && strings.EqualFold(ti.fields[j].name, string(name)) {
			return j
		}
	}
	return -1
}

// intFieldIndex returns the keyasint field an integer key names, or -1.
func (ti *typeInfo) intFieldIndex(k int64) int {
	for j := range ti.fields {
		if ti.fields[j].intKey && ti.fields[j].key == k {
			return j
		}
	}
	return -1
}

// structKey is a key of a map being read into a struct, kept as read so
// that a message can show it (String) only when one is needed.
type structKey struct {
	h    cborx.Head
	text []byte // a text key
	k    int64  // an integer key
	idx  int    // the field it names, or -1
}

// readStructKey reads the next map key and looks up the field of ti it
// names (rule 1); a key that is neither text nor an integer names none.
func readStructKey(r *cborx.Reader, ti *typeInfo) (structKey, error) {
	key, err := readKey(r)
	switch {
	case err != nil:
	case key.h.Major == cborx.MajorText:
		key.idx = ti.fieldIndex(key.text)
	case key.h.Major == cborx.MajorUint || key.h.Major == cborx.MajorNeg:
		key.idx = ti.intFieldIndex(key.k)
	}
	return key, err
}

// readKey reads the next map key, keeping a text or integer key's value.
func readKey(r *cborx.Reader) (structKey, error) {
	h, err := r.PeekHead()
	if err != nil {
		return structKey{}, err
	}
	key := structKey{h: h, idx: -1}
	switch h.Major {
	case cborx.MajorText:
		key.text, _ = r.ReadText()
	case cborx.MajorUint, cborx.MajorNeg:
		if key.k, err = r.ReadInt(); err != nil {
			return structKey{}, err
		}
	default:
		err = r.Skip()
	}
	return key, err
}

// String is the key as a message shows it.
func (k structKey) String() string {
	switch k.h.Major {
	case cborx.MajorText:
		return strconv.Quote(string(k.text))
	case cborx.MajorUint, cborx.MajorNeg:
		return strconv.FormatInt(k.k, 10)
	}
	return k.h.TypeName()
}

// fieldMatch counts the keys of a map that name fields of its struct and
// keeps those sent while none does, for rule 5.
type fieldMatch struct {
	matched int
	keys    []string
}

// miss records a key that names no field.
func (m *fieldMatch) miss(key structKey) {
	if m.matched == 0 {
		m.keys = append(m.keys, key.String())
	}
}

// check applies rule 5 to a map of n keys read into a struct of type ti.
func (m *fieldMatch) check(ti *typeInfo, n uint64) error {
	if m.matched == 0 && n > 0 && len(ti.fields) > 0 {
		return newNoFieldError(ti, m.keys)
	}
	return nil
}

// fitCheck reads the next item, which fxamacker has decoded (or is about to
// decode) into a value of ti's plain-data type, and refuses it when a map
// in it shares no field with the struct it stands for (rule 5). Only the
// parts of the type that hold structs are followed; tags are left to
// fxamacker.
func fitCheck(r *cborx.Reader, ti *typeInfo) error {
	if !ti.fit {
		return r.Skip()
	}
	h, err := r.PeekHead()
	if err != nil {
		return err
	}
	switch ti.t.Kind() {
	case reflect.Pointer:
		return fitCheck(r, ti.elem)
	case reflect.Slice, reflect.Array:
		if h.Major == cborx.MajorArray {
			return fitElements(r, ti)
		}
	case reflect.Map:
		if h.Major == cborx.MajorMap {
			return fitMap(r, ti, h)
		}
	case reflect.Struct:
		if h.Major == cborx.MajorMap {
			return fitStruct(r, ti, h)
		}
	}
	return r.Skip()
}

// fitElements checks each element of an array for a slice or array type.
func fitElements(r *cborx.Reader, ti *typeInfo) error {
	n, err := r.ReadArray()
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := fitCheck(r, ti.elem); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}

// fitMap checks each value of a map for a map type; keys are fxamacker's.
func fitMap(r *cborx.Reader, ti *typeInfo, h cborx.Head) error {
	r.ReadHead()
	for i := uint64(0); i < h.Arg; i++ {
		start := r.Offset()
		if err := r.Skip(); err != nil {
			return err
		}
		key := r.Bytes(start)
		if err := fitCheck(r, ti.elem); err != nil {
			return fmt.Errorf("[%s]: %w", describeKey(key), err)
		}
	}
	return nil
}

// fitStruct checks a map for a struct type: rule 5 here, and the fields
// its keys name in turn.
func fitStruct(r *cborx.Reader, ti *typeInfo, h cborx.Head) error {
	r.ReadHead()
	var m fieldMatch
	for i := uint64(0); i < h.Arg; i++ {
		key, err := readStructKey(r, ti)
		if err != nil {
			return err
		}
		if key.idx < 0 {
			m.miss(key)
			if err := r.Skip(); err != nil {
				return err
			}
			continue
		}
		m.matched++
		f := &ti.fields[key.idx]
		if err := fitCheck(r, f.info); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	return m.check(ti, h.Arg)
}

// describeKey shows an encoded map key in a message.
func describeKey(key []byte) string {
	r := cborx.NewReader(key)
	k, err := readKey(&r)
	if err != nil {
		return "?"
	}
	return k.String()
}
