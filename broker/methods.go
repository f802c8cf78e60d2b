package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// ErrNotCallable reports a value that cannot be published as it is: it has
// no remotely callable method, its RemoteMethods names a method that it
// does not have or that cannot be called remotely, or one of its methods
// takes a context.Context elsewhere than first. registry.Register returns
// it, and a server's Serve for its root (see VerifyCallable); the message
// names the type and the method and says what to change.
var ErrNotCallable = errors.New("tether: not remotely callable")

// notCallable is an error matching ErrNotCallable whose message says what
// is wrong and what to do.
type notCallable struct {
	where string // "NewServer", or ""
	msg   string
}

func (e *notCallable) Error() string {
	if e.where != "" {
		return "tether: " + e.where + ": " + e.msg
	}
	return "tether: " + e.msg
}

func (e *notCallable) Is(target error) bool { return target == ErrNotCallable }

// VerifyCallable reports whether obj can be published by name or as a
// server's root, returning an error matching ErrNotCallable if not:
//
//   - obj is a nil pointer (a variable that was never set);
//   - obj has no remotely callable method: a method is callable when it is
//     exported, declared by obj's type (or listed in its RemoteMethods)
//     and has the form func (ctx context.Context, args...) (R, error) or
//     func (ctx context.Context, args...) error, the context optional;
//   - its RemoteMethods lists a method it does not have, or one that
//     cannot be called remotely;
//   - a method that would be callable takes a context.Context elsewhere
//     than as its first parameter.
//
// Other exported methods whose shape is not callable are skipped, not
// refused: Describe lists them with the reason. A value that takes every
// call through a Call method of its own (a relay's proxy, a *Ref) counts
// as callable. registry.Register and NewServer call VerifyCallable;
// values sent by reference in calls are not checked, since a reference
// may be a mere handle that is passed back home.
func VerifyCallable(obj any) error {
	if v := reflect.ValueOf(obj); v.Kind() == reflect.Pointer && v.IsNil() {
		t := v.Type()
		return &notCallable{msg: fmt.Sprintf("a nil %s has nothing to call: publish a value (&%s{...})", typeName(t), typeName(t.Elem()))}
	}
	if r, ok := obj.(*Ref); ok {
		local, isLocal := r.Local()
		if !isLocal {
			return nil // a proxy: calls go on to its object
		}
		obj = local
	}
	if obj == nil {
		return &notCallable{msg: "a nil value has no remotely callable method: publish a value with exported methods"}
	}
	ot := objTypeOf(obj)
	if len(ot.mistakes) > 0 {
		return &notCallable{msg: strings.Join(ot.mistakes, "; ")}
	}
	if len(ot.methods) > 0 || ot.forwards {
		return nil
	}
	return &notCallable{msg: nothingCallable(reflect.TypeOf(obj), ot)}
}

// nothingCallable explains why type t, with method table ot, has no
// remotely callable method.
func nothingCallable(t reflect.Type, ot *objType) string {
	msg := typeName(t) + " has no remotely callable method"
	if t.Kind() != reflect.Pointer {
		pt := reflect.PointerTo(t)
		var onPtr []string
		for i := 0; i < pt.NumMethod(); i++ {
			m := pt.Method(i)
			if _, ok := t.MethodByName(m.Name); !ok && shapeProblem(m.Type) == "" {
				onPtr = append(onPtr, m.Name)
			}
		}
		if len(onPtr) > 0 {
			what := "its method " + onPtr[0] + " is"
			if len(onPtr) > 1 {
				what = "its methods " + strings.Join(onPtr, ", ") + " are"
			}
			return fmt.Sprintf("%s: %s declared on *%s (pointer receiver); publish a pointer (&%s{...}) instead",
				msg, what, typeName(t), typeName(t))
		}
	}
	var why []string
	for _, s := range ot.skipped {
		why = append(why, s.Name+": "+s.Reason)
	}
	if len(ot.promoted) > 0 {
		names := slices.Sorted(maps.Keys(ot.promoted))
		why = append(why, fmt.Sprintf("%s: promoted from an embedded field, so not remote unless RemoteMethods lists them", strings.Join(names, ", ")))
	}
	if len(why) == 0 {
		why = append(why, "it has no exported method that is not marked Local")
	}
	return fmt.Sprintf("%s (%s): give it an exported method of the form func (ctx context.Context, args...) (R, error) or func (ctx context.Context, args...) error",
		msg, strings.Join(why, "; "))
}

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
	// promoted are the methods the type gets from an embedded field and
	// did not opt in: not callable, named only to explain why.
	promoted map[string]bool
	// forwards marks a type that takes every call through a Call method
	// of its own (remoteable.Caller, declared by the type itself): its
	// values are exported as proxies. A Call promoted from an embedded
	// reference does not make one.
	forwards bool
	// skipped are the exported methods the type declares itself that are
	// not callable because of their shape, with the reason, for Describe.
	skipped []SkippedMethod
	// mistakes are the errors in the type's declaration that registering
	// it reports (see VerifyCallable): a RemoteMethods entry that names
	// no callable method, a context.Context that is not the first
	// parameter, a RemoteMethods that panicked.
	mistakes []string
	// declPanicked marks a table built without declarations because
	// RemoteMethods panicked (on a nil receiver, say): it is not kept, so
	// that the next value of the type is asked again.
	declPanicked bool
}

// noMethod is the error for a call of a method the type does not expose.
func (ot *objType) noMethod(obj any, name string) error {
	if ot.promoted[name] {
		return fmt.Errorf("%w: %T has no remote method %q: it is promoted from an embedded field, and only methods the type declares itself are remote unless its RemoteMethods lists them", ErrUnknownMethod, obj, name)
	}
	for _, sk := range ot.skipped {
		if sk.Name == name {
			return fmt.Errorf("%w: %T has no remote method %q: %s cannot be called remotely: %s", ErrUnknownMethod, obj, name, name, sk.Reason)
		}
	}
	return fmt.Errorf("%w: %T has no remote method %q", ErrUnknownMethod, obj, name)
}

var (
	objTypes  sync.Map // reflect.Type -> *objType
	ctxType   = reflect.TypeFor[context.Context]()
	declarerT = reflect.TypeFor[remoteable.Declarer]()
	guardedT  = reflect.TypeFor[remoteable.Guarded]()
	callerT   = reflect.TypeFor[remoteable.Caller]()
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
	if !ot.declPanicked {
		objTypes.Store(t, ot)
	}
	return ot
}

// buildObjType builds the method table of type t, whose value obj is
// asked for its declarations.
func buildObjType(t reflect.Type, obj any, gen uint64) *objType {
	ot := &objType{gen: gen, methods: map[string]*method{}, guarded: t.Implements(guardedT)}
	promoted := promotedMethods(t)
	ot.forwards = t.Implements(callerT) && !promoted["Call"]
	var decl remoteable.Methods
	// Only the type's own declarations count: an embedded field's
	// RemoteMethods speaks for the field's methods, not for the methods
	// the embedding type exposes.
	if t.Implements(declarerT) && !promoted["RemoteMethods"] {
		decl = ot.declarations(t, obj)
	}
	for i := 0; i < t.NumMethod(); i++ {
		m := t.Method(i)
		opts, listed := decl[m.Name]
		if opts.Local {
			continue
		}
		if promoted[m.Name] && !listed {
			// Embedding a type (a *cache.Map, say) to use it must not
			// publish its methods (its Set) to every peer.
			if ot.promoted == nil {
				ot.promoted = map[string]bool{}
			}
			ot.promoted[m.Name] = true
			continue
		}
		if ot.refuse(t, m, listed) {
			continue
		}
		ot.methods[m.Name] = newMethod(m, opts)
		ot.names = append(ot.names, m.Name)
	}
	ot.checkListed(t, decl)
	slices.Sort(ot.names)
	slices.Sort(ot.mistakes)
	return ot
}

// declarations asks obj for its type's RemoteMethods, noting a panic as a
// mistake.
func (ot *objType) declarations(t reflect.Type, obj any) remoteable.Methods {
	decl, p := safeDeclare(obj.(remoteable.Declarer))
	if p != nil {
		ot.declPanicked = true
		ot.mistakes = append(ot.mistakes, fmt.Sprintf("%s panicked (%v), so its declarations are unknown: it must not depend on the value (it is called on the first value of the type the broker sees)", methodName(t, "RemoteMethods"), p))
	}
	return decl
}

// refuse reports whether method m of t cannot be called remotely because
// of its shape, recording why: as a mistake when RemoteMethods lists it
// (listed) or its context is misplaced, as a skipped method otherwise.
func (ot *objType) refuse(t reflect.Type, m reflect.Method, listed bool) bool {
	mt := m.Type
	if reason := shapeProblem(mt); reason != "" {
		if listed {
			ot.mistakes = append(ot.mistakes, fmt.Sprintf("%s lists %s, which cannot be called remotely: %s; fix its signature, or remove the entry", methodName(t, "RemoteMethods"), m.Name, reason))
		} else if !frameworkMethods[m.Name] {
			ot.skipped = append(ot.skipped, SkippedMethod{Name: m.Name, Reason: reason})
		}
		return true
	}
	if j := misplacedCtx(mt); j > 0 {
		reason := fmt.Sprintf("it takes a context.Context as parameter %d: a context must be the first parameter", j)
		ot.mistakes = append(ot.mistakes, fmt.Sprintf("%s takes a context.Context as parameter %d: move the context to the first parameter, or mark the method Local in RemoteMethods", methodName(t, m.Name), j))
		ot.skipped = append(ot.skipped, SkippedMethod{Name: m.Name, Reason: reason})
		return true
	}
	return false
}

// newMethod describes a remotely callable method: whether it takes a
// context, its parameters' and its result's codecs.
func newMethod(m reflect.Method, opts remoteable.MethodOptions) *method {
	mt := m.Type
	in := 1 // after the receiver
	hasCtx := mt.NumIn() > 1 && mt.In(1) == ctxType
	if hasCtx {
		in = 2
	}
	var result *typeInfo
	if mt.NumOut() == 2 {
		result = infoOf(mt.Out(0))
	}
	me := &method{name: m.Name, fn: m.Func, hasCtx: hasCtx, variadic: mt.IsVariadic(), result: result, opts: opts}
	for j := in; j < mt.NumIn(); j++ {
		pt := mt.In(j)
		if me.variadic && j == mt.NumIn()-1 {
			pt = pt.Elem()
		}
		me.params = append(me.params, infoOf(pt))
	}
	return me
}

// checkListed records as mistakes the names RemoteMethods lists that t
// does not have.
func (ot *objType) checkListed(t reflect.Type, decl remoteable.Methods) {
	for name := range decl {
		if _, ok := t.MethodByName(name); ok {
			continue
		}
		msg := fmt.Sprintf("%s lists %s, which %s does not have", methodName(t, "RemoteMethods"), name, typeName(t))
		if _, onPtr := reflect.PointerTo(t).MethodByName(name); onPtr && t.Kind() != reflect.Pointer {
			msg += fmt.Sprintf(" (it is declared on *%s, with a pointer receiver): publish a pointer instead", typeName(t))
		} else {
			msg += ": fix the name, or remove the entry"
		}
		ot.mistakes = append(ot.mistakes, msg)
	}
}

// frameworkMethods are methods a type has for Tether or for Go itself
// (remoteable's interfaces, fmt.Stringer, error), never meant to be called
// remotely: a description does not list them among the skipped methods.
var frameworkMethods = map[string]bool{
	"RemoteMethods": true, "RemotePolicy": true, "CacheFeed": true, "CacheTypes": true,
	"Exported": true, "Unexported": true, "String": true, "GoString": true, "Error": true,
}

// remoteShape is how a remote method looks, for the errors that explain why
// one is not.
const remoteShape = "a remote method returns error or (R, error)"

// shapeProblem says why a method of type mt (a method expression's type,
// receiver first) cannot be called remotely because of its results, or
// returns "".
func shapeProblem(mt reflect.Type) string {
	switch n := mt.NumOut(); {
	case n == 0:
		return "it returns nothing; " + remoteShape
	case n == 1 && mt.Out(0) != errorType:
		return fmt.Sprintf("its result is %s, not error; %s", goName(mt.Out(0).String()), remoteShape)
	case n == 2 && mt.Out(1) != errorType:
		return fmt.Sprintf("its second result is %s, not error; %s", goName(mt.Out(1).String()), remoteShape)
	case n > 2:
		return fmt.Sprintf("it returns %d results; %s", n, remoteShape)
	}
	return ""
}

// misplacedCtx returns the position (1 for the first parameter after the
// receiver) of a context.Context parameter of mt that is not the first
// parameter, or 0.
func misplacedCtx(mt reflect.Type) int {
	for j := 2; j < mt.NumIn(); j++ {
		if mt.In(j) == ctxType {
			return j
		}
	}
	return 0
}

// typeName is t as Go writes it in its own package: *cache.Map[string,y.User].
func typeName(t reflect.Type) string { return goName(t.String()) }

// methodName is t's method name as Go writes it: (*users.Users).Get.
func methodName(t reflect.Type, name string) string {
	if t.Kind() == reflect.Pointer {
		return "(" + typeName(t) + ")." + name
	}
	return typeName(t) + "." + name
}

// promotedMethods returns the names of t's methods that t does not declare
// itself but gets from an embedded field (a struct, a pointer to one or an
// interface, at any depth). For a pointer type, a method the struct it
// points to declares counts as declared, whatever its receiver.
//
// reflect does not say whether a method is promoted. A method whose name
// is in no embedded field's method set cannot be; one whose name is, is
// either promoted or shadowed by a declaration of t's own, and the two
// differ in their code: the compiler writes a promoted method as a wrapper
// that it marks "<autogenerated>", while a declared method is the
// function in its source file (also for generic types). A pointer type's
// method with a value receiver is a wrapper too, around the value type's
// method, which is then looked at instead.
func promotedMethods(t reflect.Type) map[string]bool {
	s := t
	if s.Kind() == reflect.Pointer {
		s = s.Elem()
	}
	if s.Kind() != reflect.Struct {
		return nil
	}
	var out map[string]bool
	for i := 0; i < s.NumField(); i++ {
		f := s.Field(i)
		if !f.Anonymous {
			continue
		}
		sets := []reflect.Type{f.Type}
		if k := f.Type.Kind(); k != reflect.Pointer && k != reflect.Interface {
			sets = append(sets, reflect.PointerTo(f.Type)) // reachable through a *S
		}
		for _, ft := range sets {
			for j := 0; j < ft.NumMethod(); j++ {
				name := ft.Method(j).Name
				if out[name] || declaredOn(t, name) {
					continue
				}
				if _, ok := t.MethodByName(name); !ok {
					continue // not in t's method set (a pointer method of a value type)
				}
				if out == nil {
					out = map[string]bool{}
				}
				out[name] = true
			}
		}
	}
	return out
}

// declaredOn reports whether t declares method name itself (see
// promotedMethods).
func declaredOn(t reflect.Type, name string) bool {
	m, ok := t.MethodByName(name)
	if !ok {
		return false
	}
	if !isWrapper(m.Func) {
		return true
	}
	return t.Kind() == reflect.Pointer && declaredOn(t.Elem(), name)
}

// isWrapper reports whether fn's code is one the compiler generated. Code
// whose origin is unknown counts as generated: the method stays hidden.
func isWrapper(fn reflect.Value) bool {
	f := runtime.FuncForPC(fn.Pointer())
	if f == nil {
		return true
	}
	file, _ := f.FileLine(f.Entry())
	return file == "<autogenerated>"
}

// safeDeclare calls RemoteMethods, treating a panic (a nil receiver, say) as
// no declarations, and returning what it panicked with.
func safeDeclare(d remoteable.Declarer) (m remoteable.Methods, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			m, panicked = nil, p
		}
	}()
	return d.RemoteMethods(), nil
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

// refusesNil reports whether a parameter of type ti refuses a nil argument:
// a *Ref, and an interface with methods other than error, which a handler
// would call at once. Pointers (a *T for a Referenceable T included),
// slices, maps, any and error take nil: a handler that takes an optional
// reference declares a pointer to its type.
func refusesNil(ti *typeInfo) bool {
	switch ti.kind {
	case kRef:
		return true
	case kInterface:
		return ti.t.NumMethod() > 0 && ti.t != errorType
	}
	return false
}

// errNilArgument is the error for a nil argument to a parameter that
// refuses it.
func errNilArgument(i int, method string, ti *typeInfo) error {
	what := "a reference"
	if ti.kind == kInterface {
		what = "a value or reference implementing it"
	}
	return fmt.Errorf("%w: argument %d of %s is nil, but its parameter is %v: pass %s (only pointer, slice, map, any and error parameters take nil)",
		ErrBadArguments, i+1, method, ti.t, what)
}
