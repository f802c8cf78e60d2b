// Package signals provides typed, in-process signals: a value that many
// observers can connect to and that the owner emits.
//
// A Signal is the local half of Tether's observation story. A model emits on
// its Changed signal whether it is the original object or a remote mirror of
// it, so code that watches a model reads the same in both cases.
//
// The zero value of Signal is ready to use:
//
//	var changed signals.Signal[int]
//	stop := changed.Connect(func(v int) { fmt.Println("now", v) })
//	changed.Emit(3)
//	stop()
//
// Slots run synchronously in the goroutine that calls Emit, in the order they
// were connected. A slot must therefore return quickly; a slot that needs to
// block should hand the value to a goroutine it owns.
package signals
