package gateway

import (
	"context"
	"fmt"
	"slices"

	"github.com/tether-go/tether/broker"
)

// openRPCVersion is the version of the OpenRPC specification rpc.discover's
// documents follow.
const openRPCVersion = "1.2.6"

// openRPC is an OpenRPC document (https://spec.open-rpc.org): what
// rpc.discover answers.
type openRPC struct {
	OpenRPC    string         `json:"openrpc"`
	Info       openRPCInfo    `json:"info"`
	Methods    []openRPCMeth  `json:"methods"`
	Components openRPCCompnts `json:"components"`
}

// openRPCInfo is the document's info object.
type openRPCInfo struct {
	Title       string `json:"title"`
	Version     string `json:"version"`
	Description string `json:"description,omitempty"`
}

// openRPCMeth is one method: a manager's, or a built-in.
type openRPCMeth struct {
	Name           string              `json:"name"`
	Summary        string              `json:"summary,omitempty"`
	ParamStructure string              `json:"paramStructure"`
	Params         []contentDescriptor `json:"params"`
	Result         contentDescriptor   `json:"result"`
	Errors         []map[string]string `json:"errors,omitempty"`
	Idempotent     bool                `json:"x-idempotent,omitempty"`
	Variadic       bool                `json:"x-variadic,omitempty"`
}

// contentDescriptor names a parameter or a result and gives its schema.
type contentDescriptor struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Schema   schema `json:"schema"`
}

// openRPCCompnts holds what methods refer to: the gateway's errors.
type openRPCCompnts struct {
	Errors map[string]openRPCError `json:"errors"`
}

// openRPCError is an error a method may answer with.
type openRPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// gatewayErrors are the gateway's error codes, by the name the document
// gives them under components/errors.
var gatewayErrors = map[string]openRPCError{
	"ParseError":     {CodeParseError, "the body is not JSON"},
	"InvalidRequest": {CodeInvalidRequest, "not a valid JSON-RPC request"},
	"MethodNotFound": {CodeMethodNotFound, "no such manager, handle or method"},
	"InvalidParams":  {CodeInvalidParams, "the params do not fit the method"},
	"Internal":       {CodeInternal, "the gateway failed"},
	"Remote":         {CodeRemote, "the method returned an error (data.name says which)"},
	"Unavailable":    {CodeUnavailable, "the server is out of reach, or the gateway closed"},
	"Timeout":        {CodeTimeout, "the call did not finish in time, or was cancelled"},
	"Unauthorized":   {CodeUnauthorized, "a missing or wrong bearer token"},
	"Refused":        {CodeRefused, "the server refuses the gateway's own connection"},
	"HandleExpired":  {CodeHandleExpired, "handle expired: obtain it again"},
}

// errorRefs refers every method to every error of gatewayErrors, in the
// order of their codes.
func errorRefs() []map[string]string {
	names := make([]string, 0, len(gatewayErrors))
	for n := range gatewayErrors {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return gatewayErrors[b].Code - gatewayErrors[a].Code })
	refs := make([]map[string]string, len(names))
	for i, n := range names {
		refs[i] = map[string]string{"$ref": "#/components/errors/" + n}
	}
	return refs
}

// discover answers rpc.discover: an OpenRPC document listing every
// manager's methods, with their params' and results' JSON Schemas, and the
// built-ins.
func (g *Gateway) discover(ctx context.Context, _ builtinCall) (any, error) {
	names, err := g.cl.Registry().List(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	doc := &openRPC{
		OpenRPC: openRPCVersion,
		Info: openRPCInfo{Title: "Tether gateway", Version: "1",
			Description: "The managers of a Tether server, called through its JSON-RPC gateway (docs/protocol.md §12)."},
		Methods:    []openRPCMeth{},
		Components: openRPCCompnts{Errors: gatewayErrors},
	}
	refs := errorRefs()
	for _, name := range names {
		target, err := g.target(ctx, name)
		if err != nil {
			return nil, err
		}
		d, err := g.describe(ctx, target, false)
		if err != nil {
			return nil, fmt.Errorf("describing %s: %w", name, err)
		}
		for _, md := range d.Methods {
			doc.Methods = append(doc.Methods, methodDoc(name, md, refs))
		}
	}
	doc.Methods = append(doc.Methods, builtinDocs(refs)...)
	return doc, nil
}

// methodDoc is the OpenRPC method of md on the manager called manager:
// its params by position, named p1, p2, ..., since Go keeps no parameter
// names at run time.
func methodDoc(manager string, md broker.MethodDescription, refs []map[string]string) openRPCMeth {
	m := openRPCMeth{Name: manager + "." + md.Name, ParamStructure: "by-position", Params: []contentDescriptor{},
		Errors: refs, Idempotent: md.Idempotent, Variadic: md.Variadic}
	for i := range md.Params {
		td := &md.Params[i]
		cd := contentDescriptor{Name: fmt.Sprintf("p%d", i+1), Required: true, Schema: schemaOf(td)}
		if md.Variadic && i == len(md.Params)-1 && td.Elem != nil {
			// The variadic arguments follow one by one, each of this schema.
			cd.Required, cd.Schema = false, schemaOf(td.Elem)
		}
		m.Params = append(m.Params, cd)
	}
	m.Result = contentDescriptor{Name: "result", Schema: schemaOf(md.Result)}
	if md.Result == nil {
		m.Result.Schema = schema{"type": "null"}
	}
	return m
}

// builtinDocs are the OpenRPC methods of the built-ins.
func builtinDocs(refs []map[string]string) []openRPCMeth {
	name := contentDescriptor{Name: "name", Required: true, Schema: schema{"type": "string"}}
	handle := contentDescriptor{Name: "handle", Required: true, Schema: schema{"type": "string", "pattern": "^ref-"}}
	return []openRPCMeth{
		{Name: "rpc.managers", Summary: "the managers' names", ParamStructure: "by-position", Params: []contentDescriptor{},
			Result: contentDescriptor{Name: "names", Schema: schema{"type": "array", "items": schema{"type": "string"}}}, Errors: refs},
		{Name: "rpc.describe", Summary: "a manager's or a handle's description", ParamStructure: "by-position", Params: []contentDescriptor{name},
			Result: contentDescriptor{Name: "description", Schema: schema{"type": "object"}}, Errors: refs},
		{Name: "rpc.release", Summary: "gives a handle back", ParamStructure: "by-position", Params: []contentDescriptor{handle},
			Result: contentDescriptor{Name: "result", Schema: schema{"type": "null"}}, Errors: refs},
		{Name: "rpc.discover", Summary: "this document", ParamStructure: "by-position", Params: []contentDescriptor{},
			Result: contentDescriptor{Name: "OpenRPC Schema", Schema: schema{"$ref": "https://raw.githubusercontent.com/open-rpc/meta-schema/master/schema.json"}}, Errors: refs},
	}
}
