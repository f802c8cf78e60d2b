package remoteable

// MethodOptions declares how one method behaves remotely. Listing a method
// in Methods, even with no options, also makes it remote when the type gets
// it from an embedded field (a promoted method), which is otherwise not
// remote; Local keeps it local whatever its origin.
type MethodOptions struct {
	// Idempotent marks a method that is safe to repeat: calling it twice has
	// the same effect as calling it once. A lasting reference (package
	// remote) may replay such a call to re-obtain a reference it returned
	// after an outage, or retry it once after a reconnect.
	Idempotent bool
	// ByReference sends the method's result by reference even when its type
	// does not embed Referenceable (a registry handing out managers does
	// this). The result must then be a pointer or another comparable value.
	ByReference bool
	// Local hides the method from remote callers: it stays callable in
	// process only.
	Local bool
}

// Methods maps method names to their options.
type Methods map[string]MethodOptions

// Declarer is implemented by types that declare options for their methods.
// The broker calls RemoteMethods once per type, on the first value of the
// type it sees, so the answer must not depend on the value. It counts only
// when the type declares RemoteMethods itself: one promoted from an
// embedded field speaks for that field's type, and is not called.
type Declarer interface {
	RemoteMethods() Methods
}
