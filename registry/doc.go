// Package registry holds named managers: the objects a process publishes.
//
// A Registry is what a server usually publishes as its root. Local code looks
// managers up by name with Lookup; remote peers call the same Lookup through
// a reference to the registry and receive a reference to the manager, since
// the registry declares that Lookup's result travels by reference. Register
// and Unregister are local only: a peer cannot change what a process
// publishes.
//
//	reg := registry.New()
//	if err := reg.Register("users", usersManager); err != nil { ... }
//	srv := broker.NewServer(reg)
package registry
