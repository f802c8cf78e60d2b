package broker

import (
	"context"
	"reflect"
	"slices"
	"sync"

	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// method is one remotely callable method of a type.
type method struct {
	name     string
	fn       reflect.Value // the method expression: receiver first
	hasCtx   bool
	params   []*typeInfo // after the receiver and the context
	variadic bool
	result   *typeInfo // nil when the method returns only an error
	opts     remoteable.MethodOptions
}

// objType is the method table of one Go type.
type objType struct {
	gen     uint64
	methods map[string]*method
	names   []string // sorted
	guarded bool
}

var (
	objTypes  sync.Map // reflect.Type -> *objType
	ctxType   = reflect.TypeFor[context.Context]()
	declarerT = reflect.TypeFor[remoteable.Declarer]()
	guardedT  = reflect.TypeFor[remoteable.Guarded]()
)

// objTypeOf returns the method table of obj's type, building it the first
// time the type is seen (and again after a new type registration).
func objTypeOf(obj any) *objType {
	t := reflect.TypeOf(obj)
	gen := typereg.Generation()
	if ot, ok := objTypes.Load(t); ok && ot.(*objType).gen == gen {
		return ot.(*objType)
	}
	ot := buildObjType(t, obj, gen)
	objTypes.Store(t, ot)
	return ot
}

func buildObjType(t reflect.Type, obj any, gen uint64) *objType {
	ot := &objType{gen: gen, methods: map[string]*method{}, guarded: t.Implements(guardedT)}
	var decl remoteable.Methods
	if t.Implements(declarerT) {
		decl = safeDeclare(obj.(remoteable.Declarer))
	}
	for i := 0; i < t.NumMethod(); i++ {
		m := t.Method(i)
		mt := m.Type
		opts := decl[m.Name]
		if opts.Local {
			continue
		}
		in := 1 // after the receiver
		hasCtx := mt.NumIn() > 1 && mt.In(1) == ctxType
		if hasCtx {
			in = 2
		}
		var result *typeInfo
		switch mt.NumOut() {
		case 1:
			if mt.Out(0) != errorType {
				continue
			}
		case 2:
			if mt.Out(1) != errorType {
				continue
			}
			result = infoOf(mt.Out(0))
		default:
			continue
		}
		me := &method{name: m.Name, fn: m.Func, hasCtx: hasCtx, variadic: mt.IsVariadic(), result: result, opts: opts}
		for j := in; j < mt.NumIn(); j++ {
			pt := mt.In(j)
			if me.variadic && j == mt.NumIn()-1 {
				pt = pt.Elem()
			}
			me.params = append(me.params, infoOf(pt))
		}
		ot.methods[m.Name] = me
		ot.names = append(ot.names, m.Name)
	}
	slices.Sort(ot.names)
	return ot
}

// safeDeclare calls RemoteMethods, treating a panic (a nil receiver, say) as
// no declarations.
func safeDeclare(d remoteable.Declarer) (m remoteable.Methods) {
	defer func() {
		if recover() != nil {
			m = nil
		}
	}()
	return d.RemoteMethods()
}

// arity describes the accepted argument count for error messages.
func (m *method) arity() (min, max int) {
	if m.variadic {
		return len(m.params) - 1, -1
	}
	return len(m.params), len(m.params)
}

// paramInfo returns the typeInfo for argument i.
func (m *method) paramInfo(i int) *typeInfo {
	if i >= len(m.params) {
		return m.params[len(m.params)-1] // variadic tail
	}
	return m.params[i]
}
