package broker

import "reflect"

// The registry names of the objects calls are addressed to (Target.Name),
// for interceptors that label calls by manager (a trace's rpc.service). The
// broker knows a registry by its method: a call of a method named Lookup
// with one string argument (registry.Registry's, remote.Registry's) hands
// out the manager registered under that string. Both ends remember it where
// it costs nothing per call: the caller in the *Ref the call returned, the
// handler in the export entry made for the result (the first Lookup that
// handed the object out on a connection names it there). Any other object
// has no name.

// lookupMethod is the method by which a registry hands out its managers.
const lookupMethod = "Lookup"

// lookupName returns the name a call of method with args looks up, when it
// is a registry's Lookup, else "".
func lookupName(method string, args []any) string {
	if method != lookupMethod || len(args) != 1 {
		return ""
	}
	s, _ := args[0].(string)
	return s
}

// nameLookedUp gives the reference a Lookup call decoded into reply the
// name it was looked up by. A reference decoded from a reply is a handle of
// its own (see Ref), not yet seen by any other goroutine; a local object
// that came home is left alone.
func nameLookedUp(reply any, name string) {
	var r *Ref
	switch p := reply.(type) {
	case **Ref:
		r = *p
	case *any:
		r, _ = (*p).(*Ref)
	}
	if r != nil && r.c != nil {
		r.name = name
	}
}

// lookupName returns the name a received call looks up, when it is a
// registry's Lookup on a local object (a method whose one parameter after
// the context is a string), else "".
func (t *inCall) lookupName() string {
	if t.m.name != lookupMethod || len(t.m.params) != 1 {
		return ""
	}
	if last := t.in[len(t.in)-1]; last.Kind() == reflect.String {
		return last.String()
	}
	return ""
}
