package gateway

import "github.com/tether-go/tether/broker"

// schema is a JSON Schema (draft 7, as OpenRPC uses).
type schema map[string]any

// scalarSchemas are the schemas of the kinds that have no parts.
var scalarSchemas = map[broker.Kind]func() schema{
	broker.KindBool:   func() schema { return schema{"type": "boolean"} },
	broker.KindInt:    func() schema { return schema{"type": "integer"} },
	broker.KindUint:   func() schema { return schema{"type": "integer", "minimum": 0} },
	broker.KindString: func() schema { return schema{"type": "string"} },
	broker.KindBytes:  func() schema { return schema{"type": "string", "contentEncoding": "base64"} },
	broker.KindTime:   func() schema { return schema{"type": "string", "format": "date-time"} },
	broker.KindFloat: func() schema {
		return schema{"oneOf": []schema{{"type": "number"}, {"enum": []string{"NaN", "+Inf", "-Inf"}}}}
	},
	broker.KindReference: func() schema {
		return schema{"type": "object", "required": []string{"$ref"},
			"properties": schema{"$ref": schema{"type": "string", "pattern": "^ref-"}, "type": schema{"type": "string"}}}
	},
	broker.KindError: func() schema {
		return schema{"type": "object", "properties": schema{"$error": schema{"type": "string"}, "message": schema{"type": "string"}}}
	},
}

// schemaOf is the JSON Schema of the JSON the gateway reads and writes for
// a value of the type td describes (docs/protocol.md §12.2, §12.3), titled
// with its Go type. A nil td, an interface or a type with its own encoding
// is any JSON.
func schemaOf(td *broker.TypeDescription) schema {
	if td == nil {
		return schema{}
	}
	var s schema
	if scalar, ok := scalarSchemas[td.Kind]; ok {
		s = scalar()
	} else {
		s = compositeSchema(td)
	}
	s["title"] = td.Go
	return s
}

// compositeSchema is the schema of the kinds made of other types.
func compositeSchema(td *broker.TypeDescription) schema {
	switch td.Kind {
	case broker.KindArray:
		return schema{"type": "array", "items": schemaOf(td.Elem)}
	case broker.KindMap:
		// A map's keys are object member names (their text, for numbers
		// and booleans); params also take an array of [key, value] pairs.
		return schema{"type": "object", "additionalProperties": schemaOf(td.Elem)}
	case broker.KindStruct:
		return structSchema(td)
	case broker.KindCopyable:
		s := structSchema(td)
		s["type"] = "object" // a Copyable is an object even when it travels as an array
		props, _ := s["properties"].(schema)
		if props == nil {
			props = schema{}
		}
		props["$type"] = schema{"const": td.Name}
		s["properties"], s["additionalProperties"] = props, false
		delete(s, "items")
		return s
	case broker.KindCacheable:
		return cacheableSchema(td)
	}
	return schema{} // any, custom: any JSON
}

// structSchema is the schema of a struct: an object of its fields by their
// wire names, or an array of them for a toarray struct.
func structSchema(td *broker.TypeDescription) schema {
	props := schema{}
	items := make([]schema, 0, len(td.Fields))
	for i := range td.Fields {
		f := &td.Fields[i]
		props[f.Name] = schemaOf(&f.Type)
		items = append(items, schemaOf(&f.Type))
	}
	if td.ToArray && td.Kind == broker.KindStruct {
		return schema{"type": "array", "items": items, "additionalItems": false}
	}
	return schema{"type": "object", "properties": props, "additionalProperties": false}
}

// cacheableSchema is the schema of a model shown as its snapshot.
func cacheableSchema(td *broker.TypeDescription) schema {
	entry := schema{"type": "object", "required": []string{"key", "value"},
		"properties": schema{"key": schemaOf(td.Key), "value": schemaOf(td.Elem)}}
	return schema{"type": "object", "required": []string{"$cacheable", "epoch", "version", "entries"},
		"properties": schema{
			"$cacheable": schema{"type": "string"},
			"epoch":      schema{"type": "string"},
			"version":    schema{"type": "integer", "minimum": 0},
			"entries":    schema{"type": "array", "items": entry},
		}}
}
