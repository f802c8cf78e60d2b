package broker

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

type described struct{ remoteable.Referenceable }

func (*described) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}, "Hidden": {Local: true}}
}
func (*described) Get(name string) (user, error)        { return user{}, nil }
func (*described) Put(u user, tags ...string) error     { return nil }
func (*described) Child() (*counter, error)             { return nil, nil }
func (*described) Hidden() error                        { return nil }
func (*described) Table() (map[string][]float64, error) { return nil, nil }
func (*described) NotRemote() int                       { return 0 }
func (*described) Where() (point, error)                { return point{}, nil }
func (*described) Keyed(k keyed) error                  { return nil }

type keyed struct {
	A string `cbor:"1,keyasint"`
	B []byte `cbor:"b"`
}

func TestDescribe(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &described{})
	cl := dial(t, addr)
	d, err := cl.Root().Describe(testkit.Ctx(t, 30*time.Second))
	require.NoError(t, err)
	assert.Equal(t, "*broker.described", d.Type)
	var names []string
	for _, m := range d.Methods {
		names = append(names, m.Name)
	}
	assert.Equal(t, []string{"Child", "Get", "Keyed", "Put", "Table", "Where"}, names, "only remotely callable, non-local methods")

	get, ok := d.Method("Get")
	require.True(t, ok)
	assert.True(t, get.Idempotent)
	require.Len(t, get.Params, 1)
	assert.Equal(t, KindString, get.Params[0].Kind)
	require.NotNil(t, get.Result)
	assert.Equal(t, KindCopyable, get.Result.Kind)
	assert.Equal(t, "test.User", get.Result.Name)
	assert.NotEmpty(t, get.Result.Fields)

	put, _ := d.Method("Put")
	assert.True(t, put.Variadic)
	assert.Nil(t, put.Result)
	assert.Equal(t, KindArray, put.Params[1].Kind)

	child, _ := d.Method("Child")
	assert.Equal(t, KindReference, child.Result.Kind)
	table, _ := d.Method("Table")
	assert.Equal(t, KindMap, table.Result.Kind)
	assert.Equal(t, KindFloat, table.Result.Elem.Elem.Kind)

	where, _ := d.Method("Where")
	assert.True(t, where.Result.ToArray, "a toarray Copyable says its state is an array")
	assert.Equal(t, []string{"X", "Y"}, []string{where.Result.Fields[0].Name, where.Result.Fields[1].Name})
	kd, _ := d.Method("Keyed")
	assert.Equal(t, []FieldDescription{
		{Name: "1", Type: TypeDescription{Go: "string", Kind: "string"}, IntKey: true},
		{Name: "b", Type: TypeDescription{Go: "[]uint8", Kind: "bytes"}},
	}, kd.Params[0].Fields)

	// Locally, the same description.
	assert.Equal(t, d, Describe(&described{}))
	// A guarded object applies its policy to descriptions too.
	_, addr2 := startServer(t, &guarded{})
	other := dial(t, addr2, WithName("intruder"))
	_, err = other.Root().Describe(testkit.Ctx(t, 30*time.Second))
	assert.NoError(t, err, "MethodPolicies without a default allow describing")
}

func TestGoNamesAreShort(t *testing.T) {
	for in, want := range map[string]string{
		"*cache.Map[string,github.com/tether-go/tether/cmd/tether.User]": "*cache.Map[string,tether.User]",
		"map[string]example.com/a/b-c/v2.T":                              "map[string]v2.T",
		"*cache.Map[string,float64]":                                     "*cache.Map[string,float64]",
		"[]*example.com/x.Y":                                             "[]*x.Y",
	} {
		assert.Equal(t, want, goName(in))
	}
}

// TestKindWireNames pins the strings each Kind travels as, in CBOR and in
// JSON: they are the protocol's, whatever the Go names become.
func TestKindWireNames(t *testing.T) {
	want := map[Kind]string{
		KindBool: "bool", KindInt: "int", KindUint: "uint", KindFloat: "float", KindString: "string",
		KindBytes: "bytes", KindTime: "time", KindArray: "array", KindMap: "map", KindStruct: "struct",
		KindReference: "reference", KindCopyable: "copyable", KindCacheable: "cacheable", KindAny: "any",
		KindError: "error", KindCustom: "custom",
	}
	for k, s := range want {
		assert.Equal(t, s, string(k))
		j, err := json.Marshal(TypeDescription{Kind: k})
		require.NoError(t, err)
		assert.JSONEq(t, `{"go":"","kind":"`+s+`"}`, string(j))
		b, err := cbor.Marshal(TypeDescription{Kind: k})
		require.NoError(t, err)
		var back map[string]any
		require.NoError(t, cbor.Unmarshal(b, &back))
		assert.Equal(t, s, back["kind"], "a text string on the wire")
	}
}

type variadicPoints struct{ remoteable.Referenceable }

func (*variadicPoints) Plot(label string, pts ...point) error { return nil }

// TestDescribeVariadicElemKeepsToArray: the element type of a variadic
// parameter is described whole; its ToArray was dropped when the element
// was copied field by field, so a JSON client sent a toarray struct as an
// object.
func TestDescribeVariadicElemKeepsToArray(t *testing.T) {
	d := Describe(&variadicPoints{})
	plot, ok := d.Method("Plot")
	require.True(t, ok)
	require.True(t, plot.Variadic)
	require.Len(t, plot.Params, 2)
	last := plot.Params[1]
	assert.Equal(t, KindArray, last.Kind)
	assert.Equal(t, "...broker.point", last.Go)
	require.NotNil(t, last.Elem)
	assert.Equal(t, describeType(infoOf(reflect.TypeFor[point]()), 0), *last.Elem)
	assert.True(t, last.Elem.ToArray, "the element is a toarray struct")
}
