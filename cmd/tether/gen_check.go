package main

import (
	"fmt"
	"go/types"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Packages whose types the generator treats specially.
const (
	tetherModule   = "github.com/tether-go/tether"
	cachePath      = tetherModule + "/cache"
	remoteablePath = tetherModule + "/remoteable"
)

// mirrorOf names, for each model interface of package cache, the mirror
// type a stub receives it into: the remote side of a View is a Mirror.
var mirrorOf = map[string]string{"View": "Mirror", "ValueView": "ValueMirror"}

// genIface is an interface the generator writes a stub for.
type genIface struct {
	name    string
	methods []*genMethod
}

// genMethod is one method of a stub, checked to be callable remotely.
type genMethod struct {
	name     string
	ctx      types.Type   // the type of the first parameter if it is a context.Context, or nil
	params   []*types.Var // the parameters after the context
	variadic bool         // the last of params is variadic
	result   types.Type   // the result before the error, or nil
	model    *types.Named // a result of cache's View or ValueView, received into a mirror
}

// genInterfaces finds and checks the named interfaces of pkg; it returns
// every reason one of them cannot have a stub, in the order of names and
// then of methods.
func genInterfaces(pkg *types.Package, names []string) ([]*genIface, []string) {
	var ifaces []*genIface
	var refusals []string
	for _, name := range names {
		gi, why := genInterface(pkg, name)
		refusals = append(refusals, why...)
		if gi != nil {
			ifaces = append(ifaces, gi)
		}
	}
	return ifaces, refusals
}

// genInterface checks one named interface and its methods, which Go's
// method set gives flattened (embedded interfaces included) and sorted.
func genInterface(pkg *types.Package, name string) (*genIface, []string) {
	obj, ok := pkg.Scope().Lookup(name).(*types.TypeName)
	if !ok {
		return nil, []string{fmt.Sprintf("%s: no such type in package %s", name, pkg.Path())}
	}
	named, isNamed := obj.Type().(*types.Named)
	iface, isIface := obj.Type().Underlying().(*types.Interface)
	switch {
	case !isIface:
		return nil, []string{fmt.Sprintf("%s: not an interface (it is %s)", name, types.TypeString(obj.Type().Underlying(), types.RelativeTo(pkg)))}
	case !isNamed || obj.IsAlias():
		return nil, []string{fmt.Sprintf("%s: an alias; name the interface it stands for", name)}
	case named.TypeParams().Len() > 0:
		return nil, []string{fmt.Sprintf("%s: a generic interface cannot have a stub: a stub's methods must have fixed types", name)}
	case !iface.IsMethodSet():
		return nil, []string{fmt.Sprintf("%s: a constraint (it lists types), not an interface of methods", name)}
	}
	if pkg.Scope().Lookup(stubName(name)) != nil {
		return nil, []string{fmt.Sprintf("%s: the package already declares %s, the name of the stub", name, stubName(name))}
	}
	gi := &genIface{name: name}
	var refusals []string
	for i := range iface.NumMethods() {
		m, why := genCheckMethod(iface.Method(i), types.RelativeTo(pkg))
		if why != "" {
			refusals = append(refusals, fmt.Sprintf("%s.%s: %s", name, iface.Method(i).Name(), why))
			continue
		}
		gi.methods = append(gi.methods, m)
	}
	return gi, refusals
}

// genCheckMethod checks that fn can be called remotely and says why not,
// spelling types with q.
func genCheckMethod(fn *types.Func, q types.Qualifier) (*genMethod, string) {
	sig := fn.Type().(*types.Signature)
	switch {
	case fn.Name() == "TetherCaller":
		return nil, "TetherCaller is the method every stub has to give back its reference; rename this one"
	case !fn.Exported():
		return nil, "unexported: a peer can call exported methods only"
	}
	m := &genMethod{name: fn.Name(), variadic: sig.Variadic()}
	for i := range sig.Params().Len() {
		p := sig.Params().At(i)
		switch {
		case isContext(p.Type()) && i == 0:
			m.ctx = p.Type()
		case isContext(p.Type()):
			return nil, fmt.Sprintf("context.Context is parameter %d: a context must come first", i+1)
		default:
			if why := wireProblem(p.Type(), nil); why != "" {
				return nil, fmt.Sprintf("parameter %d (%s) cannot cross the wire: %s", i+1, strings.TrimSpace(p.Name()+" "+types.TypeString(p.Type(), q)), why)
			}
			m.params = append(m.params, p)
		}
	}
	if why := m.checkResults(sig.Results(), q); why != "" {
		return nil, why
	}
	return m, ""
}

// checkResults accepts error and (T, error) results.
func (m *genMethod) checkResults(res *types.Tuple, q types.Qualifier) string {
	switch {
	case res.Len() == 0:
		return "no error result: a remote call can fail, so the method must return error last"
	case res.Len() > 2:
		return fmt.Sprintf("%d results: a remote method returns error or (T, error)", res.Len())
	case !isError(res.At(res.Len() - 1).Type()):
		if res.Len() == 1 {
			return "no error result: a remote call can fail, so the method must return error last"
		}
		return "error is not the last result: a remote method returns (T, error)"
	case res.Len() == 1:
		return ""
	}
	m.result = res.At(0).Type()
	if why := wireProblem(m.result, nil); why != "" {
		return fmt.Sprintf("result %s cannot cross the wire: %s", types.TypeString(m.result, q), why)
	}
	if n, ok := types.Unalias(m.result).(*types.Named); ok && n.Obj().Pkg() != nil &&
		n.Obj().Pkg().Path() == cachePath && mirrorOf[n.Obj().Name()] != "" {
		m.model = n
	}
	return ""
}

// isContext reports whether t is context.Context.
func isContext(t types.Type) bool {
	n, ok := types.Unalias(t).(*types.Named)
	return ok && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "context" && n.Obj().Name() == "Context"
}

// isError reports whether t is the predeclared error.
func isError(t types.Type) bool {
	return types.Identical(t, types.Universe.Lookup("error").Type())
}

// wireProblem says why a value of type t cannot be encoded, or returns "".
// It looks through pointers, slices, arrays, maps and the exported fields of
// structs, and stops at types that travel by reference or are Tether's own;
// seen guards against recursive types.
func wireProblem(t types.Type, seen map[types.Type]bool) string {
	if seen[t] {
		return ""
	}
	switch u := types.Unalias(t).(type) {
	case *types.Named:
		if travelsByItself(u) {
			return ""
		}
		if seen == nil {
			seen = map[types.Type]bool{}
		}
		seen[t] = true
		return wireProblem(u.Underlying(), seen)
	case *types.Signature:
		return "a func cannot be encoded"
	case *types.Chan:
		return "a chan cannot be encoded"
	case *types.Basic:
		if u.Kind() == types.UnsafePointer {
			return "an unsafe.Pointer cannot be encoded"
		}
	case *types.Pointer:
		return wireProblem(u.Elem(), seen)
	case *types.Slice:
		return wireProblem(u.Elem(), seen)
	case *types.Array:
		return wireProblem(u.Elem(), seen)
	case *types.Map:
		return firstProblem(wireProblem(u.Key(), seen), wireProblem(u.Elem(), seen))
	case *types.Struct:
		return structProblem(u, seen)
	}
	return ""
}

// structProblem looks at the exported fields of a struct, the ones CBOR
// encodes.
func structProblem(s *types.Struct, seen map[types.Type]bool) string {
	for i := range s.NumFields() {
		f := s.Field(i)
		if !f.Exported() {
			continue
		}
		if why := wireProblem(f.Type(), seen); why != "" {
			return fmt.Sprintf("field %s: %s", f.Name(), why)
		}
	}
	return ""
}

// firstProblem returns the first non-empty reason.
func firstProblem(whys ...string) string {
	for _, w := range whys {
		if w != "" {
			return w
		}
	}
	return ""
}

// tetherPackages are the packages of Tether whose types know how they
// travel: references, models and mirrors.
var tetherPackages = map[string]bool{
	tetherModule + "/broker": true, tetherModule + "/remote": true, cachePath: true,
	remoteablePath: true, tetherModule + "/registry": true, tetherModule + "/signals": true,
}

// travelsByItself reports whether values of n are not encoded field by
// field: types of Tether's own packages, and types that embed
// remoteable.Referenceable and so travel by reference.
func travelsByItself(n *types.Named) bool {
	if pkg := n.Obj().Pkg(); pkg != nil && tetherPackages[pkg.Path()] {
		return true
	}
	ms := types.NewMethodSet(types.NewPointer(n))
	for i := range ms.Len() {
		fn := ms.At(i).Obj()
		if fn.Name() == "tetherReferenceable" && fn.Pkg() != nil && fn.Pkg().Path() == remoteablePath {
			return true
		}
	}
	return false
}

// stubName is the name of the stub type of interface name.
func stubName(name string) string {
	r, size := utf8.DecodeRuneInString(name)
	return string(unicode.ToLower(r)) + name[size:] + "Stub"
}
