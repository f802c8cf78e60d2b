package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remote"
)

// toJSON converts a result, as an `any` receives it with raw Copyables,
// into a value encoding/json can write. td, when known, names the fields of
// toarray structs. References become handles this gateway keeps; a model
// becomes its snapshot.
func (g *Gateway) toJSON(ctx context.Context, v any, td *broker.TypeDescription) (any, error) {
	td = shaped(td)
	if j, ok := scalarToJSON(v); ok {
		return j, nil
	}
	switch x := v.(type) {
	case []any:
		return g.listToJSON(ctx, x, td)
	case map[string]any:
		return g.objectToJSON(ctx, x, td)
	case map[any]any:
		return g.mapToJSON(ctx, x, td)
	case *broker.RawCopyable:
		return g.copyableToJSON(ctx, x, td)
	case *broker.RemoteError:
		return map[string]any{"$error": x.Name, "message": x.Message}, nil
	case error:
		return map[string]any{"$error": fmt.Sprintf("%T", x), "message": x.Error()}, nil
	case cbor.Tag:
		return g.tagToJSON(ctx, x)
	case *remote.Ref:
		return g.refToJSON(ctx, x, td)
	}
	// Anything else is one of this process's own objects coming home, or a
	// value with a Go type this gateway registered.
	return map[string]any{"$value": fmt.Sprintf("%v", v), "type": reflect.TypeOf(v).String()}, nil
}

// shaped is td when it says how the value is shaped, nil for any and
// custom: the value's own type decides then.
func shaped(td *broker.TypeDescription) *broker.TypeDescription {
	if td != nil && (td.Kind == broker.KindAny || td.Kind == broker.KindCustom) {
		return nil
	}
	return td
}

// scalarToJSON converts a value that needs no description and holds no
// other value; ok is false for the others.
func scalarToJSON(v any) (j any, ok bool) {
	switch x := v.(type) {
	case nil, bool, string, int64, uint64:
		return x, true
	case float64:
		return jsonFloat(x), true
	case float32:
		return jsonFloat(float64(x)), true
	case []byte:
		return base64.StdEncoding.EncodeToString(x), true
	case time.Time:
		return x.Format(time.RFC3339Nano), true
	case big.Int:
		return json.Number(x.String()), true
	case *big.Int:
		return json.Number(x.String()), true
	}
	return nil, false
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

// listToJSON writes an array: a toarray struct's fields by name when td
// describes one of this length, else each element.
func (g *Gateway) listToJSON(ctx context.Context, x []any, td *broker.TypeDescription) (any, error) {
	if fieldsAsArray(td) && len(x) == len(td.Fields) {
		return g.fieldsToJSON(ctx, x, td.Fields)
	}
	elem := elemOf(td, broker.KindArray)
	out := make([]any, len(x))
	for i, e := range x {
		var err error
		if out[i], err = g.toJSON(ctx, e, elem); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fieldsAsArray reports whether td is a struct or Copyable whose fields
// travel as an array.
func fieldsAsArray(td *broker.TypeDescription) bool {
	return td != nil && (td.Kind == broker.KindStruct || td.Kind == broker.KindCopyable) && td.ToArray
}

// elemOf is td's element type when td is of kind, else nil.
func elemOf(td *broker.TypeDescription, kind broker.Kind) *broker.TypeDescription {
	if td != nil && td.Kind == kind {
		return td.Elem
	}
	return nil
}

// fieldsToJSON writes a toarray struct's values as an object keyed by its
// field names.
func (g *Gateway) fieldsToJSON(ctx context.Context, x []any, fields []broker.FieldDescription) (any, error) {
	out := make(map[string]any, len(x))
	for i, f := range fields {
		var err error
		if out[f.Name], err = g.toJSON(ctx, x[i], &f.Type); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// objectToJSON writes a map keyed by text, or a struct keyed by its field
// names.
func (g *Gateway) objectToJSON(ctx context.Context, x map[string]any, td *broker.TypeDescription) (any, error) {
	out := make(map[string]any, len(x))
	for k, e := range x {
		var err error
		if out[k], err = g.toJSON(ctx, e, fieldType(td, k)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fieldType is the type of the member name of a value of td: a map's
// value type, or the named field's type.
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
	elem := elemOf(td, broker.KindMap)
	if scalarKeys(m) {
		out, err := g.keyedToJSON(ctx, m, elem)
		if err != nil {
			return nil, err
		}
		if len(out) == len(m) {
			return out, nil
		}
		// 1 and "1" both present: only pairs keep them apart.
	}
	return g.pairsToJSON(ctx, m, elem)
}

// scalarKeys reports whether every key of m is text, an integer or a
// boolean.
func scalarKeys(m map[any]any) bool {
	for k := range m {
		switch k.(type) {
		case string, int64, uint64, bool:
		default:
			return false
		}
	}
	return true
}

// keyedToJSON writes m as an object named by its keys' text.
func (g *Gateway) keyedToJSON(ctx context.Context, m map[any]any, elem *broker.TypeDescription) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, e := range m {
		var err error
		if out[fmt.Sprint(k)], err = g.toJSON(ctx, e, elem); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pairsToJSON writes m as an array of [key, value] pairs.
func (g *Gateway) pairsToJSON(ctx context.Context, m map[any]any, elem *broker.TypeDescription) (any, error) {
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

// copyableToJSON writes a Copyable as its state's members plus "$type",
// or as {"$type", "$value"} when its state is not an object.
func (g *Gateway) copyableToJSON(ctx context.Context, x *broker.RawCopyable, td *broker.TypeDescription) (any, error) {
	state, err := g.toJSON(ctx, x.State, td)
	if err != nil {
		return nil, err
	}
	if m, ok := state.(map[string]any); ok {
		m["$type"] = x.Name
		return m, nil
	}
	return map[string]any{"$type": x.Name, "$value": state}, nil
}

// tagToJSON writes a CBOR tag nobody registered as its number and content.
func (g *Gateway) tagToJSON(ctx context.Context, x cbor.Tag) (any, error) {
	c, err := g.toJSON(ctx, x.Content, nil)
	if err != nil {
		return nil, err
	}
	return map[string]any{"$tag": x.Number, "$value": c}, nil
}

// refToJSON writes a model as its snapshot, and any other reference as a
// handle this gateway keeps, with the Go type it is known by.
func (g *Gateway) refToJSON(ctx context.Context, x *remote.Ref, td *broker.TypeDescription) (any, error) {
	if x.Cacheable() {
		return g.snapshotJSON(ctx, x, td)
	}
	typ := declaredRefType(td)
	if typ == "" {
		if d, err := x.Describe(ctx); err == nil {
			typ = d.Type
		}
	}
	return map[string]any{"$ref": g.handles.put(x, typ), "type": typ}, nil
}

// declaredRefType is the Go type td declares for a reference, or "" when
// it declares none or only an interface: the object then says what it is.
func declaredRefType(td *broker.TypeDescription) string {
	if td == nil || td.Kind != broker.KindReference || strings.HasPrefix(td.Go, "interface") {
		return ""
	}
	return td.Go
}
