package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tether-go/tether/broker"
)

// paramError is an argument that does not fit its parameter: the request's
// fault (invalid params), never the server's.
type paramError struct {
	path string
	msg  string
}

func (e *paramError) Error() string { return e.path + ": " + e.msg }

// badParam is the error for the argument at path.
func badParam(path, format string, args ...any) error {
	return &paramError{path: path, msg: fmt.Sprintf(format, args...)}
}

// jsonKind names the JSON type of a value json.Decoder produced with
// UseNumber, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeJSON parses one JSON value keeping numbers exact.
func decodeJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// fromJSONFunc converts a JSON value, not null, for a parameter of one kind.
type fromJSONFunc func(g *Gateway, v any, td *broker.TypeDescription, path string) (any, error)

// fromJSONKinds holds the converter of each kind that has one; any, custom
// and kinds this gateway does not know take any JSON (fromJSONAny). It is
// filled by init because the converters of composite kinds call fromJSON,
// which reads it.
var fromJSONKinds map[broker.Kind]fromJSONFunc

func init() {
	fromJSONKinds = map[broker.Kind]fromJSONFunc{
		broker.KindBool:      (*Gateway).boolFromJSON,
		broker.KindString:    (*Gateway).stringFromJSON,
		broker.KindInt:       (*Gateway).intFromJSON,
		broker.KindUint:      (*Gateway).uintFromJSON,
		broker.KindFloat:     (*Gateway).floatFromJSON,
		broker.KindBytes:     (*Gateway).bytesFromJSON,
		broker.KindTime:      (*Gateway).timeFromJSON,
		broker.KindArray:     (*Gateway).arrayFromJSON,
		broker.KindMap:       (*Gateway).mapFromJSON,
		broker.KindStruct:    (*Gateway).structFromJSON,
		broker.KindCopyable:  (*Gateway).copyableFromJSON,
		broker.KindReference: (*Gateway).referenceFromJSON,
		broker.KindCacheable: (*Gateway).cacheableFromJSON,
		broker.KindError:     (*Gateway).errorFromJSON,
	}
}

// fromJSON converts v, a JSON value, into what the broker sends for a
// parameter described by td: numbers of the right sign and width, byte
// strings from base64, times from RFC 3339, structs keyed by their wire
// names (or arrays in field order), Copyables as *broker.RawCopyable, and
// references from the handles this gateway gave out.
func (g *Gateway) fromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if td == nil || td.Kind == broker.KindAny || td.Kind == broker.KindCustom {
		return g.fromJSONAny(v, path)
	}
	if v == nil {
		return nil, checkNull(td, path)
	}
	convert, ok := fromJSONKinds[td.Kind]
	if !ok {
		return g.fromJSONAny(v, path)
	}
	return convert(g, v, td, path)
}

// checkNull refuses null for a parameter that cannot be nil.
func checkNull(td *broker.TypeDescription, path string) error {
	if nullable(td) {
		return nil
	}
	return badParam(path, "want %s (%s), got null", kindWord(td.Kind), td.Go)
}

// mismatch is the error for a JSON value of the wrong type for td.
func mismatch(v any, td *broker.TypeDescription, path string) error {
	return badParam(path, "want %s (%s), got %s", kindWord(td.Kind), td.Go, jsonKind(v))
}

// nullable reports whether a parameter of td can be null: pointers,
// slices, maps, references and interfaces can; scalars and plain structs
// cannot, rather than silently becoming zero.
func nullable(td *broker.TypeDescription) bool {
	if strings.HasPrefix(td.Go, "*") || strings.HasPrefix(td.Go, "[]") || strings.HasPrefix(td.Go, "map[") {
		return true
	}
	switch td.Kind {
	case broker.KindReference, broker.KindAny, broker.KindCustom, broker.KindError, broker.KindBytes, broker.KindMap:
		return true
	}
	return false
}

// kindWords say in error messages what JSON a kind wants; every other kind
// wants an object.
var kindWords = map[broker.Kind]string{
	broker.KindBool:   "a boolean",
	broker.KindString: "a string",
	broker.KindTime:   "a string",
	broker.KindInt:    "an integer",
	broker.KindUint:   "an integer",
	broker.KindFloat:  "a number",
	broker.KindBytes:  "a base64 string",
	broker.KindArray:  "an array",
}

// kindWord is the JSON a parameter of kind wants, for error messages.
func kindWord(kind broker.Kind) string {
	if w, ok := kindWords[kind]; ok {
		return w
	}
	return "an object"
}

// boolFromJSON takes a JSON boolean.
func (g *Gateway) boolFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if b, ok := v.(bool); ok {
		return b, nil
	}
	return nil, mismatch(v, td, path)
}

// stringFromJSON takes a JSON string.
func (g *Gateway) stringFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if s, ok := v.(string); ok {
		return s, nil
	}
	return nil, mismatch(v, td, path)
}

// intFromJSON takes a JSON integer within the width of td's Go type.
func (g *Gateway) intFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	return numberFromJSON(v, td, path, "an integer", func(s string) (any, error) { return strconv.ParseInt(s, 10, bits(td.Go)) })
}

// uintFromJSON takes a non-negative JSON integer within the width of td's
// Go type.
func (g *Gateway) uintFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	return numberFromJSON(v, td, path, "a non-negative integer", func(s string) (any, error) { return strconv.ParseUint(s, 10, bits(td.Go)) })
}

// specialFloats are the floats JSON has no number for, written as results
// write them.
var specialFloats = map[string]float64{"NaN": math.NaN(), "+Inf": math.Inf(1), "Inf": math.Inf(1), "-Inf": math.Inf(-1)}

// floatFromJSON takes any JSON number, or "NaN", "+Inf" or "-Inf".
func (g *Gateway) floatFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if s, ok := v.(string); ok {
		if f, special := specialFloats[s]; special {
			return f, nil
		}
	}
	return numberFromJSON(v, td, path, "a number", func(s string) (any, error) { return strconv.ParseFloat(s, 64) })
}

// numberFromJSON takes a JSON number that parse accepts; want says what
// the argument should have been when parse refuses it.
func numberFromJSON(v any, td *broker.TypeDescription, path, want string, parse func(string) (any, error)) (any, error) {
	n, ok := v.(json.Number)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	x, err := parse(n.String())
	if err != nil {
		return nil, badParam(path, "want %s (%s), got %s", want, td.Go, n)
	}
	return x, nil
}

// widths are the sizes in bits of the sized integer types.
var widths = map[string]int{"int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32}

// bits is the width of a sized integer type, 64 for the others.
func bits(goType string) int {
	if n, ok := widths[goType]; ok {
		return n
	}
	return 64
}

// bytesFromJSON takes base64 text, padded or not.
func (g *Gateway) bytesFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, badParam(path, "want base64 for %s: %v", td.Go, err)
		}
	}
	return b, nil
}

// timeFromJSON takes RFC 3339 text.
func (g *Gateway) timeFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	s, ok := v.(string)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, badParam(path, "want an RFC 3339 time: %v", err)
	}
	return t, nil
}

// arrayFromJSON takes an array, each element by td.Elem.
func (g *Gateway) arrayFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if s, ok := v.(string); ok && td.Elem != nil && td.Elem.Go == "uint8" {
		// A byte array ([N]byte) is written as base64, like []byte.
		return g.bytesFromJSON(s, &broker.TypeDescription{Go: td.Go, Kind: broker.KindBytes}, path)
	}
	a, ok := v.([]any)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	out := make([]any, len(a))
	for i, x := range a {
		var err error
		if out[i], err = g.fromJSON(x, td.Elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mapFromJSON takes an object or an array of [key, value] pairs.
func (g *Gateway) mapFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		return g.objectMapFromJSON(x, td, path)
	case []any:
		return g.pairsFromJSON(x, td, path)
	}
	return nil, mismatch(v, td, path)
}

// objectMapFromJSON reads a map written as an object, its names converted
// to keys of td.Key's kind.
func (g *Gateway) objectMapFromJSON(m map[string]any, td *broker.TypeDescription, path string) (any, error) {
	out := make(map[any]any, len(m))
	for k, e := range m {
		key, err := mapKey(k, td.Key)
		if err != nil {
			return nil, badParam(path, "key %q: %v", k, err)
		}
		if _, dup := out[key]; dup {
			return nil, badParam(path, "key %q repeats another key", k)
		}
		if out[key], err = g.fromJSON(e, td.Elem, path+"."+k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pairsFromJSON reads a map written as [key, value] pairs, as results
// write maps whose keys are not text, numbers or booleans.
func (g *Gateway) pairsFromJSON(a []any, td *broker.TypeDescription, path string) (any, error) {
	out := make(map[any]any, len(a))
	for i, p := range a {
		pair, ok := p.([]any)
		if !ok || len(pair) != 2 {
			return nil, badParam(fmt.Sprintf("%s[%d]", path, i), "want a [key, value] pair")
		}
		key, err := g.fromJSON(pair[0], td.Key, fmt.Sprintf("%s[%d][0]", path, i))
		if err != nil {
			return nil, err
		}
		if key != nil && !reflect.TypeOf(key).Comparable() {
			return nil, badParam(fmt.Sprintf("%s[%d][0]", path, i), "a %s cannot be a map key here", jsonKind(pair[0]))
		}
		if _, dup := out[key]; dup {
			return nil, badParam(fmt.Sprintf("%s[%d][0]", path, i), "key repeats another key")
		}
		if out[key], err = g.fromJSON(pair[1], td.Elem, fmt.Sprintf("%s[%d][1]", path, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// mapKeys parse a JSON object's name into a map key of each kind that can
// be one.
var mapKeys = map[broker.Kind]func(string) (any, error){
	broker.KindString: func(k string) (any, error) { return k, nil },
	broker.KindAny:    func(k string) (any, error) { return k, nil },
	broker.KindInt:    func(k string) (any, error) { return strconv.ParseInt(k, 10, 64) },
	broker.KindUint:   func(k string) (any, error) { return strconv.ParseUint(k, 10, 64) },
	broker.KindFloat:  floatKey,
	broker.KindBool:   func(k string) (any, error) { return strconv.ParseBool(k) },
}

// floatKey parses a float key; NaN is refused, as it equals no key.
func floatKey(k string) (any, error) {
	f, err := strconv.ParseFloat(k, 64)
	if err == nil && math.IsNaN(f) {
		return nil, errors.New("NaN is not a usable key")
	}
	return f, err
}

// mapKey converts a JSON object key into a map key of the described kind.
func mapKey(k string, td *broker.TypeDescription) (any, error) {
	if td == nil {
		return k, nil
	}
	parse, ok := mapKeys[td.Kind]
	if !ok {
		return nil, fmt.Errorf("keys of %s cannot come from JSON", td.Go)
	}
	return parse(k)
}

// structFromJSON takes an object keyed by the struct's wire field names.
func (g *Gateway) structFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	return g.fieldsFromJSON(m, td, path)
}

// copyableFromJSON takes an object of the Copyable's fields, with an
// optional "$type" that must be its registered name.
func (g *Gateway) copyableFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, mismatch(v, td, path)
	}
	if name, has := m["$type"]; has {
		if name != td.Name {
			return nil, badParam(path, "want a %s, got $type %v", td.Name, name)
		}
		m = without(m, "$type")
	}
	state, err := g.fieldsFromJSON(m, td, path)
	if err != nil {
		return nil, err
	}
	return &broker.RawCopyable{Name: td.Name, State: state}, nil
}

// without is m less key.
func without(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// referenceFromJSON takes {"$ref": handle}.
func (g *Gateway) referenceFromJSON(v any, td *broker.TypeDescription, path string) (any, error) {
	if m, ok := v.(map[string]any); ok {
		if r, err := g.refFromJSON(m, path); r != nil || err != nil {
			return r, err
		}
	}
	return nil, badParam(path, "want a reference ({\"$ref\": handle} from an earlier result) for %s, got %s", td.Go, jsonKind(v))
}

// cacheableFromJSON refuses: a model is sent by its owner, not built from
// JSON.
func (g *Gateway) cacheableFromJSON(_ any, td *broker.TypeDescription, path string) (any, error) {
	return nil, badParam(path, "a model (%s) cannot be sent from JSON", td.Go)
}

// errorFromJSON refuses: an error value has no JSON form to send.
func (g *Gateway) errorFromJSON(_ any, _ *broker.TypeDescription, path string) (any, error) {
	return nil, badParam(path, "an error value cannot be sent from JSON")
}

// fieldsFromJSON lays an object out as the struct travels: a map keyed by
// wire names, or an array in field order for a toarray struct.
func (g *Gateway) fieldsFromJSON(m map[string]any, td *broker.TypeDescription, path string) (any, error) {
	if len(td.Fields) == 0 && !td.ToArray {
		return g.fromJSONAny(m, path) // not described (too deep): as given
	}
	vals, set, err := g.fieldValues(m, td, path)
	if err != nil {
		return nil, err
	}
	switch {
	case td.ToArray:
		return fieldArray(td.Fields, vals, set), nil
	case slices.ContainsFunc(td.Fields, func(f broker.FieldDescription) bool { return f.IntKey }):
		return fieldMap(td.Fields, vals, set, fieldKey), nil
	}
	return fieldMap(td.Fields, vals, set, func(f broker.FieldDescription) string { return f.Name }), nil
}

// fieldValues converts the members of m into the values of td's fields,
// in field order; set says which fields m gave.
func (g *Gateway) fieldValues(m map[string]any, td *broker.TypeDescription, path string) (vals []any, set []bool, err error) {
	idx := map[string]int{}
	for i, f := range td.Fields {
		idx[f.Name] = i
	}
	vals, set = make([]any, len(td.Fields)), make([]bool, len(td.Fields))
	for k, e := range m {
		i, err := fieldIndex(td, idx, k, path)
		if err != nil {
			return nil, nil, err
		}
		if set[i] {
			return nil, nil, badParam(path, "field %q given twice", td.Fields[i].Name)
		}
		f := td.Fields[i]
		if vals[i], err = g.fromJSON(e, &f.Type, path+"."+f.Name); err != nil {
			return nil, nil, err
		}
		set[i] = true
	}
	return vals, set, nil
}

// fieldIndex finds the field a member names: by its wire name, else
// without regard to case.
func fieldIndex(td *broker.TypeDescription, idx map[string]int, k, path string) (int, error) {
	if i, ok := idx[k]; ok {
		return i, nil
	}
	if i := slices.IndexFunc(td.Fields, func(f broker.FieldDescription) bool { return strings.EqualFold(f.Name, k) }); i >= 0 {
		return i, nil
	}
	names := make([]string, len(td.Fields))
	for j, f := range td.Fields {
		names[j] = f.Name
	}
	return 0, badParam(path, "%s has no field %q (fields: %s)", td.Go, k, strings.Join(names, ", "))
}

// fieldArray is a toarray struct's fields in order, the missing ones as
// zero values.
func fieldArray(fields []broker.FieldDescription, vals []any, set []bool) []any {
	for i, f := range fields {
		if !set[i] {
			vals[i] = zeroFor(&f.Type)
		}
	}
	return vals
}

// fieldMap is a struct's given fields keyed by key: their names, or the
// integers of keyasint fields.
func fieldMap[K comparable](fields []broker.FieldDescription, vals []any, set []bool, key func(broker.FieldDescription) K) map[K]any {
	out := map[K]any{}
	for i, f := range fields {
		if set[i] {
			out[key(f)] = vals[i]
		}
	}
	return out
}

// fieldKey is a field's map key when some field of its struct is keyasint:
// the integer for such a field, else its name.
func fieldKey(f broker.FieldDescription) any {
	if f.IntKey {
		if k, err := strconv.ParseInt(f.Name, 10, 64); err == nil {
			return k
		}
	}
	return f.Name
}

// zeroValues are what a missing field of a toarray struct is sent as, by
// kind; other kinds are sent as nil.
var zeroValues = map[broker.Kind]any{
	broker.KindBool:   false,
	broker.KindInt:    int64(0),
	broker.KindUint:   uint64(0),
	broker.KindFloat:  0.0,
	broker.KindString: "",
	broker.KindBytes:  []byte{},
	broker.KindTime:   time.Time{},
}

// zeroFor is the value a missing field of a toarray struct is sent as.
func zeroFor(td *broker.TypeDescription) any {
	return zeroValues[td.Kind]
}

// fromJSONAny converts a value for an untyped parameter: integers become
// int64 (uint64 above its range), other numbers float64; {"$ref": h} is a
// handle, {"$type": name, ...} a Copyable by name.
func (g *Gateway) fromJSONAny(v any, path string) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return numberFromJSONAny(x, path)
	case []any:
		return g.listFromJSONAny(x, path)
	case map[string]any:
		return g.objectFromJSONAny(x, path)
	}
	return v, nil
}

// numberFromJSONAny is an integer as int64, or uint64 above its range,
// else a float64.
func numberFromJSONAny(x json.Number, path string) (any, error) {
	if i, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
		return i, nil
	}
	if u, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
		return u, nil
	}
	f, err := x.Float64()
	if err != nil {
		return nil, badParam(path, "number %s out of range", x)
	}
	return f, nil
}

// listFromJSONAny converts each element of an untyped array.
func (g *Gateway) listFromJSONAny(x []any, path string) (any, error) {
	out := make([]any, len(x))
	for i, e := range x {
		var err error
		if out[i], err = g.fromJSONAny(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// objectFromJSONAny reads an untyped object: a handle, a Copyable by name,
// or a map of text to untyped values.
func (g *Gateway) objectFromJSONAny(x map[string]any, path string) (any, error) {
	if r, err := g.refFromJSON(x, path); r != nil || err != nil {
		return r, err
	}
	t, typed := x["$type"]
	if !typed {
		return g.membersFromJSONAny(x, path)
	}
	name, ok := t.(string)
	if !ok {
		return nil, badParam(path, "$type must be a Copyable's registered name, got %s", jsonKind(t))
	}
	return g.copyableFromJSONAny(name, x, path)
}

// copyableFromJSONAny reads {"$type": name, ...} as the Copyable of that
// name: its state is "$value" when that is the only other member, else
// the other members.
func (g *Gateway) copyableFromJSONAny(name string, x map[string]any, path string) (any, error) {
	var state any
	var err error
	if val, has := x["$value"]; has && len(x) == 2 {
		// A Copyable whose state is not a map (a toarray type).
		state, err = g.fromJSONAny(val, path+".$value")
	} else {
		state, err = g.membersFromJSONAny(x, path)
	}
	if err != nil {
		return nil, err
	}
	return &broker.RawCopyable{Name: name, State: state}, nil
}

// membersFromJSONAny converts an untyped object's members, less "$type".
func (g *Gateway) membersFromJSONAny(x map[string]any, path string) (any, error) {
	out := make(map[string]any, len(x))
	for k, e := range x {
		if k == "$type" {
			continue
		}
		var err error
		if out[k], err = g.fromJSONAny(e, path+"."+k); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// refFromJSON turns {"$ref": handle} into the reference the handle stands
// for; it returns nil, nil for any other object.
func (g *Gateway) refFromJSON(m map[string]any, path string) (any, error) {
	h, ok := m["$ref"]
	if !ok {
		return nil, nil
	}
	id, _ := h.(string)
	r := g.handles.get(id)
	if r == nil {
		return nil, badParam(path, "%v: %v", errUnknownHandle, h)
	}
	return r, nil
}
