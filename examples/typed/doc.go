// Typed calls a manager through its Go interface: the interface Users is
// the contract, tether gen writes its stub (tether_gen.go), and the client
// turns the reference it looked up into a Users with remoteable.As, then
// calls it as it would call the local manager.
//
//	go run ./examples/typed
//	go generate ./examples/typed   # after changing Users
package main
