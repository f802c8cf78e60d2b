// Basic runs a Tether server and a client in one process and prints what
// happens: a registry lookup, a call, a registered error crossing the wire,
// a callback from the server to the client, and a cancelled call.
//
//	go run ./examples/basic
package main
