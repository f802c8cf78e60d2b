package gateway_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// openRPCDoc is what a client reads of an OpenRPC document.
type openRPCDoc struct {
	OpenRPC string `json:"openrpc"`
	Info    *struct {
		Title   string `json:"title"`
		Version string `json:"version"`
	} `json:"info"`
	Methods []struct {
		Name           string            `json:"name"`
		ParamStructure string            `json:"paramStructure"`
		Params         []json.RawMessage `json:"params"`
		Result         *struct {
			Name   string         `json:"name"`
			Schema map[string]any `json:"schema"`
		} `json:"result"`
		Errors []map[string]string `json:"errors"`
	} `json:"methods"`
	Components struct {
		Errors map[string]struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	} `json:"components"`
}

// TestDiscoverIsAnOpenRPCDocument: rpc.discover answers a document with
// OpenRPC's required fields, naming every method of every manager and the
// built-ins, with params and results as JSON Schemas and the gateway's
// error codes.
func TestDiscoverIsAnOpenRPCDocument(t *testing.T) {
	leakcheck.Check(t)
	e := newEnv(t, nil)
	raw, err := e.gw.Call(testkit.Ctx(t, time.Minute), "rpc.discover", nil)
	require.NoError(t, err)
	var doc openRPCDoc
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	require.NoError(t, dec.Decode(&doc))
	assert.True(t, strings.HasPrefix(doc.OpenRPC, "1."), doc.OpenRPC)
	require.NotNil(t, doc.Info)
	assert.NotEmpty(t, doc.Info.Title)
	assert.NotEmpty(t, doc.Info.Version)

	d, err := e.gw.Describe(testkit.Ctx(t, time.Minute), "shop")
	require.NoError(t, err)
	want := []string{"rpc.describe", "rpc.discover", "rpc.managers", "rpc.release"}
	for _, md := range d.Methods {
		want = append(want, "shop."+md.Name)
	}
	var got []string
	byName := map[string]int{}
	for i, m := range doc.Methods {
		got = append(got, m.Name)
		byName[m.Name] = i
		require.NotNil(t, m.Params, "%s: params is required", m.Name)
		require.NotNil(t, m.Result, "%s: result is required", m.Name)
		assert.NotEmpty(t, m.Result.Name, m.Name)
		assert.Equal(t, "by-position", m.ParamStructure, m.Name)
		for _, ref := range m.Errors {
			name, ok := strings.CutPrefix(ref["$ref"], "#/components/errors/")
			require.True(t, ok, "%s: %v", m.Name, ref)
			assert.Contains(t, doc.Components.Errors, name, m.Name)
		}
	}
	sort.Strings(want)
	sort.Strings(got)
	assert.Equal(t, want, got, "every method, once")

	codes := map[int]bool{}
	for _, e := range doc.Components.Errors {
		codes[e.Code] = true
	}
	for _, c := range []int{gateway.CodeParseError, gateway.CodeInvalidRequest, gateway.CodeMethodNotFound, gateway.CodeInvalidParams,
		gateway.CodeInternal, gateway.CodeRemote, gateway.CodeUnavailable, gateway.CodeTimeout, gateway.CodeUnauthorized,
		gateway.CodeRefused, gateway.CodeHandleExpired} {
		assert.True(t, codes[c], "code %d is listed", c)
	}

	var whole struct{ Methods []map[string]any }
	require.NoError(t, json.Unmarshal(raw, &whole))
	method := func(name string) map[string]any { return whole.Methods[byName[name]] }
	add := method("shop.Add")
	assert.Equal(t, []any{
		map[string]any{"name": "p1", "required": true, "schema": map[string]any{"type": "integer", "title": "int"}},
		map[string]any{"name": "p2", "required": true, "schema": map[string]any{"type": "integer", "title": "int"}},
	}, add["params"])
	assert.Equal(t, map[string]any{"type": "integer", "title": "int"}, add["result"].(map[string]any)["schema"])

	place := method("shop.Place")["params"].([]any)[0].(map[string]any)["schema"].(map[string]any)
	assert.Equal(t, "object", place["type"])
	props := place["properties"].(map[string]any)
	assert.ElementsMatch(t, []string{"id", "items", "blob", "at", "qty", "price"}, keys(props))
	assert.Equal(t, "date-time", props["at"].(map[string]any)["format"])
	assert.Equal(t, "base64", props["blob"].(map[string]any)["contentEncoding"])
	assert.Equal(t, "array", props["items"].(map[string]any)["type"])

	model := method("shop.Model")["result"].(map[string]any)["schema"].(map[string]any)
	entries := model["properties"].(map[string]any)["entries"].(map[string]any)
	assert.Equal(t, "integer", entries["items"].(map[string]any)["properties"].(map[string]any)["value"].(map[string]any)["type"])
	assert.Equal(t, map[string]any{"type": "null"}, method("shop.Note")["result"].(map[string]any)["schema"], "only an error: null")
	sum := method("shop.Sum")
	assert.Equal(t, true, sum["x-variadic"])
	assert.Equal(t, "integer", sum["params"].([]any)[0].(map[string]any)["schema"].(map[string]any)["type"], "each variadic argument")
	open := method("shop.Open")["result"].(map[string]any)["schema"].(map[string]any)
	assert.Equal(t, []any{"$ref"}, open["required"], "a handle")

	// Over HTTP too, as any OpenRPC tool asks.
	m := e.call(t, "rpc.discover")
	assert.Equal(t, doc.OpenRPC, m["result"].(map[string]any)["openrpc"])
}

// keys are m's keys.
func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
