// Package acceptance holds a program written from the contract in
// DESIGN.md alone, as a user outside the project would write it: a Go
// interface with stubs from tether gen, servers publishing a registry,
// a client failing over between them with ConnectAny over remote.Static,
// a drain with Shutdown, errors classified with CodeOf, and a model
// watched through a relay. Its test checks every promise the program
// relies on.
package acceptance
