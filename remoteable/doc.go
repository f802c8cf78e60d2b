// Package remoteable is how a local Go type says how it travels across a
// Tether connection, and who may call it.
//
// There are four kinds of value on the wire:
//
//   - Plain data (numbers, strings, structs, maps, slices) is encoded as CBOR
//     and decoded into the receiver's declared Go type.
//   - A Copyable is a named type registered with RegisterCopyable. It is sent
//     by value together with its name, so that it decodes to the same Go type
//     on the far side even into an interface value, and can be sent on again.
//   - A Referenceable is an object that embeds the Referenceable marker. It is
//     never copied: the receiver gets a reference whose method calls travel
//     back to the object. A reference that comes back to the process that
//     exported it resolves to the original object.
//   - A Cacheable is an observable model that streams a snapshot and then its
//     changes (see package cache).
//
// A method is callable remotely when it is exported and has one of the forms
//
//	func (T) M(ctx context.Context, args...) (R, error)
//	func (T) M(ctx context.Context, args...) error
//
// where the context parameter is optional, and it is declared by the type
// itself: a method the type gets from an embedded field (a struct, a pointer
// to one or an interface, at any depth) is not remote unless the type lists
// it in its RemoteMethods, so that embedding a type to use it (a *cache.Map
// to keep state, say) never publishes that type's methods (its Set). A
// method that replaces an embedded field's method of the same name is the
// type's own. A type can declare more about its methods (which are safe to
// repeat, whose results travel by reference, which are local only) by
// implementing Declarer, and restrict its callers by implementing Guarded.
//
// A Go interface can be the contract between a manager and its callers:
// tether gen writes, for an interface, a Stub over a Caller and registers
// it with RegisterStub. As converts a local value or a reference into the
// interface, and the broker gives a reference decoded into a value of the
// interface's type (a handler parameter, a reply, a field) the face of its
// stub; a stub sent on travels as the reference it wraps.
//
// Errors keep their identity across the wire when registered with
// RegisterError (sentinel values) or RegisterErrorType (error types).
package remoteable
