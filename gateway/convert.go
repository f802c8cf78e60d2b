package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remote"
)

// paramError is an argument that does not fit its parameter: the request's
// fault (invalid params), never the server's.
type paramError struct {
	path string
	msg  string
}

func (e *paramError) Error() string { return e.path + ": " + e.msg }

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
		if !nullable(td) {
			return nil, badParam(path, "want %s (%s), got null", kindWord(td.Kind), td.Go)
		}
		return nil, nil
	}
	switch td.Kind {
	case broker.KindBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case broker.KindString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case broker.KindInt:
		if n, ok := v.(json.Number); ok {
			i, err := strconv.ParseInt(n.String(), 10, bits(td.Go))
			if err != nil {
				return nil, badParam(path, "want an integer (%s), got %s", td.Go, n)
			}
			return i, nil
		}
	case broker.KindUint:
		if n, ok := v.(json.Number); ok {
			u, err := strconv.ParseUint(n.String(), 10, bits(td.Go))
			if err != nil {
				return nil, badParam(path, "want a non-negative integer (%s), got %s", td.Go, n)
			}
			return u, nil
		}
	case broker.KindFloat:
		if n, ok := v.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				return nil, badParam(path, "want a number (%s), got %s", td.Go, n)
			}
			return f, nil
		}
		if s, ok := v.(string); ok { // as results write them
			switch s {
			case "NaN":
				return math.NaN(), nil
			case "+Inf", "Inf":
				return math.Inf(1), nil
			case "-Inf":
				return math.Inf(-1), nil
			}
		}
	case broker.KindBytes:
		if s, ok := v.(string); ok {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
					return nil, badParam(path, "want base64 for %s: %v", td.Go, err)
				}
			}
			return b, nil
		}
	case broker.KindTime:
		if s, ok := v.(string); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, badParam(path, "want an RFC 3339 time: %v", err)
			}
			return t, nil
		}
	case broker.KindArray:
		if s, ok := v.(string); ok && td.Elem != nil && td.Elem.Go == "uint8" {
			// A byte array ([N]byte) is written as base64, like []byte.
			return g.fromJSON(s, &broker.TypeDescription{Go: td.Go, Kind: broker.KindBytes}, path)
		}
		if a, ok := v.([]any); ok {
			out := make([]any, len(a))
			for i, x := range a {
				var err error
				if out[i], err = g.fromJSON(x, td.Elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
	case broker.KindMap:
		if m, ok := v.(map[string]any); ok {
			return g.mapFromJSON(m, td, path)
		}
		if a, ok := v.([]any); ok {
			return g.pairsFromJSON(a, td, path)
		}
	case broker.KindStruct:
		if m, ok := v.(map[string]any); ok {
			return g.structFromJSON(m, td, path)
		}
	case broker.KindCopyable:
		if m, ok := v.(map[string]any); ok {
			if name, has := m["$type"]; has {
				if name != td.Name {
					return nil, badParam(path, "want a %s, got $type %v", td.Name, name)
				}
				m = without(m, "$type")
			}
			state, err := g.structFromJSON(m, td, path)
			if err != nil {
				return nil, err
			}
			return &broker.RawCopyable{Name: td.Name, State: state}, nil
		}
	case broker.KindReference:
		if m, ok := v.(map[string]any); ok {
			if r, err := g.refFromJSON(m, path); r != nil || err != nil {
				return r, err
			}
		}
		return nil, badParam(path, "want a reference ({\"$ref\": handle} from an earlier result) for %s, got %s", td.Go, jsonKind(v))
	case broker.KindCacheable:
		return nil, badParam(path, "a model (%s) cannot be sent from JSON", td.Go)
	case broker.KindError:
		return nil, badParam(path, "an error value cannot be sent from JSON")
	default:
		return g.fromJSONAny(v, path)
	}
	return nil, badParam(path, "want %s (%s), got %s", kindWord(td.Kind), td.Go, jsonKind(v))
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

// bits is the width of a sized integer type, 64 for the others.
func bits(goType string) int {
	switch goType {
	case "int8", "uint8":
		return 8
	case "int16", "uint16":
		return 16
	case "int32", "uint32":
		return 32
	}
	return 64
}

func kindWord(kind broker.Kind) string {
	switch kind {
	case broker.KindBool:
		return "a boolean"
	case broker.KindString, broker.KindTime:
		return "a string"
	case broker.KindInt, broker.KindUint:
		return "an integer"
	case broker.KindFloat:
		return "a number"
	case broker.KindBytes:
		return "a base64 string"
	case broker.KindArray:
		return "an array"
	}
	return "an object"
}

func without(m map[string]any, key string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			out[k] = v
		}
	}
	return out
}

// fromJSONAny converts a value for an untyped parameter: integers become
// int64 (uint64 above its range), other numbers float64; {"$ref": h} is a
// handle, {"$type": name, ...} a Copyable by name.
func (g *Gateway) fromJSONAny(v any, path string) (any, error) {
	switch x := v.(type) {
	case json.Number:
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
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = g.fromJSONAny(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if r, err := g.refFromJSON(x, path); r != nil || err != nil {
			return r, err
		}
		if t, has := x["$type"]; has {
			if _, ok := t.(string); !ok {
				return nil, badParam(path, "$type must be a Copyable's registered name, got %s", jsonKind(t))
			}
		}
		if name, ok := x["$type"].(string); ok {
			if val, has := x["$value"]; has && len(x) == 2 {
				// A Copyable whose state is not a map (a toarray type).
				state, err := g.fromJSONAny(val, path+".$value")
				if err != nil {
					return nil, err
				}
				return &broker.RawCopyable{Name: name, State: state}, nil
			}
		}
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
		if name, ok := x["$type"].(string); ok {
			return &broker.RawCopyable{Name: name, State: out}, nil
		}
		return out, nil
	}
	return v, nil
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

func (g *Gateway) mapFromJSON(m map[string]any, td *broker.TypeDescription, path string) (any, error) {
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

// mapKey converts a JSON object key into a map key of the described kind.
func mapKey(k string, td *broker.TypeDescription) (any, error) {
	if td == nil {
		return k, nil
	}
	switch td.Kind {
	case broker.KindString, broker.KindAny:
		return k, nil
	case broker.KindInt:
		return strconv.ParseInt(k, 10, 64)
	case broker.KindUint:
		return strconv.ParseUint(k, 10, 64)
	case broker.KindFloat:
		f, err := strconv.ParseFloat(k, 64)
		if err == nil && math.IsNaN(f) {
			return nil, errors.New("NaN is not a usable key")
		}
		return f, err
	case broker.KindBool:
		return strconv.ParseBool(k)
	}
	return nil, fmt.Errorf("keys of %s cannot come from JSON", td.Go)
}

// structFromJSON lays an object out as the struct travels: a map keyed by
// wire names, or an array in field order for a toarray struct.
func (g *Gateway) structFromJSON(m map[string]any, td *broker.TypeDescription, path string) (any, error) {
	if len(td.Fields) == 0 && !td.ToArray {
		return g.fromJSONAny(m, path) // not described (too deep): as given
	}
	idx := map[string]int{}
	for i, f := range td.Fields {
		idx[f.Name] = i
	}
	vals := make([]any, len(td.Fields))
	set := make([]bool, len(td.Fields))
	for k, e := range m {
		i, ok := idx[k]
		if !ok {
			i = slices.IndexFunc(td.Fields, func(f broker.FieldDescription) bool { return strings.EqualFold(f.Name, k) })
			if i < 0 {
				names := make([]string, len(td.Fields))
				for j, f := range td.Fields {
					names[j] = f.Name
				}
				return nil, badParam(path, "%s has no field %q (fields: %s)", td.Go, k, strings.Join(names, ", "))
			}
		}
		if set[i] {
			return nil, badParam(path, "field %q given twice", td.Fields[i].Name)
		}
		f := td.Fields[i]
		v, err := g.fromJSON(e, &f.Type, path+"."+f.Name)
		if err != nil {
			return nil, err
		}
		vals[i], set[i] = v, true
	}
	if td.ToArray {
		for i, f := range td.Fields {
			if !set[i] {
				vals[i] = zeroFor(&f.Type)
			}
		}
		return vals, nil
	}
	intKeys := slices.ContainsFunc(td.Fields, func(f broker.FieldDescription) bool { return f.IntKey })
	if intKeys {
		out := map[any]any{}
		for i, f := range td.Fields {
			if set[i] {
				out[fieldKey(f)] = vals[i]
			}
		}
		return out, nil
	}
	out := map[string]any{}
	for i, f := range td.Fields {
		if set[i] {
			out[f.Name] = vals[i]
		}
	}
	return out, nil
}

func fieldKey(f broker.FieldDescription) any {
	if f.IntKey {
		if k, err := strconv.ParseInt(f.Name, 10, 64); err == nil {
			return k
		}
	}
	return f.Name
}

// zeroFor is the value a missing field of a toarray struct is sent as.
func zeroFor(td *broker.TypeDescription) any {
	switch td.Kind {
	case broker.KindBool:
		return false
	case broker.KindInt:
		return int64(0)
	case broker.KindUint:
		return uint64(0)
	case broker.KindFloat:
		return 0.0
	case broker.KindString:
		return ""
	case broker.KindBytes:
		return []byte{}
	case broker.KindTime:
		return time.Time{}
	}
	return nil
}

// toJSON converts a result, as an `any` receives it with raw Copyables,
// into a value encoding/json can write. td, when known, names the fields of
// toarray structs. References become handles this gateway keeps; a model
// becomes its snapshot.
func (g *Gateway) toJSON(ctx context.Context, v any, td *broker.TypeDescription) (any, error) {
	if td != nil && (td.Kind == broker.KindAny || td.Kind == broker.KindCustom) {
		td = nil
	}
	switch x := v.(type) {
	case nil, bool, string, int64, uint64:
		return x, nil
	case float64:
		return jsonFloat(x), nil
	case float32:
		return jsonFloat(float64(x)), nil
	case []byte:
		return base64.StdEncoding.EncodeToString(x), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	case big.Int:
		return json.Number(x.String()), nil
	case *big.Int:
		return json.Number(x.String()), nil
	case []any:
		if td != nil && (td.Kind == broker.KindStruct || td.Kind == broker.KindCopyable) && td.ToArray && len(x) == len(td.Fields) {
			out := make(map[string]any, len(x))
			for i, f := range td.Fields {
				var err error
				if out[f.Name], err = g.toJSON(ctx, x[i], &f.Type); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
		var elem *broker.TypeDescription
		if td != nil && td.Kind == broker.KindArray {
			elem = td.Elem
		}
		out := make([]any, len(x))
		for i, e := range x {
			var err error
			if out[i], err = g.toJSON(ctx, e, elem); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			var err error
			if out[k], err = g.toJSON(ctx, e, fieldType(td, k)); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[any]any:
		return g.mapToJSON(ctx, x, td)
	case *broker.RawCopyable:
		state, err := g.toJSON(ctx, x.State, td)
		if err != nil {
			return nil, err
		}
		if m, ok := state.(map[string]any); ok {
			m["$type"] = x.Name
			return m, nil
		}
		return map[string]any{"$type": x.Name, "$value": state}, nil
	case *broker.RemoteError:
		return map[string]any{"$error": x.Name, "message": x.Message}, nil
	case error:
		return map[string]any{"$error": fmt.Sprintf("%T", x), "message": x.Error()}, nil
	case cbor.Tag:
		c, err := g.toJSON(ctx, x.Content, nil)
		if err != nil {
			return nil, err
		}
		return map[string]any{"$tag": x.Number, "$value": c}, nil
	case *remote.Ref:
		if x.Cacheable() {
			return g.snapshotJSON(ctx, x, td)
		}
		typ := ""
		if td != nil && td.Kind == broker.KindReference && !strings.HasPrefix(td.Go, "interface") {
			typ = td.Go
		}
		if typ == "" {
			if d, err := x.Describe(ctx); err == nil {
				typ = d.Type
			}
		}
		return map[string]any{"$ref": g.handles.put(x, typ), "type": typ}, nil
	}
	// Anything else is one of this process's own objects coming home, or a
	// value with a Go type this gateway registered.
	return map[string]any{"$value": fmt.Sprintf("%v", v), "type": reflect.TypeOf(v).String()}, nil
}

func fieldType(td *broker.TypeDescription, name string) *broker.TypeDescription {
	if td == nil {
		return nil
	}
	if td.Kind == broker.KindMap {
		return td.Elem
	}
	for i := range td.Fields {
		if td.Fields[i].Name == name {
			return &td.Fields[i].Type
		}
	}
	return nil
}

// mapToJSON writes a map whose keys are not all text: as an object when
// every key is an integer, a boolean or text (their decimal text as the
// name, like encoding/json) and no two keys have the same text, else as an
// array of [key, value] pairs.
func (g *Gateway) mapToJSON(ctx context.Context, m map[any]any, td *broker.TypeDescription) (any, error) {
	var elem *broker.TypeDescription
	if td != nil && td.Kind == broker.KindMap {
		elem = td.Elem
	}
	scalar := true
	for k := range m {
		switch k.(type) {
		case string, int64, uint64, bool:
		default:
			scalar = false
		}
	}
	if scalar {
		out := make(map[string]any, len(m))
		for k, e := range m {
			var err error
			if out[fmt.Sprint(k)], err = g.toJSON(ctx, e, elem); err != nil {
				return nil, err
			}
		}
		if len(out) == len(m) {
			return out, nil
		}
		// 1 and "1" both present: only pairs keep them apart.
	}
	out := make([]any, 0, len(m))
	for k, e := range m {
		kj, err := g.toJSON(ctx, k, nil)
		if err != nil {
			return nil, err
		}
		ej, err := g.toJSON(ctx, e, elem)
		if err != nil {
			return nil, err
		}
		out = append(out, []any{kj, ej})
	}
	return out, nil
}

// jsonFloat keeps NaN and the infinities, which JSON cannot write as
// numbers, as strings.
func jsonFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return f
}
