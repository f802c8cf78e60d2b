// Command tether talks to Tether servers from a shell: it serves a demo,
// lists managers and their methods, calls methods with JSON arguments,
// watches models change, asks a server's health, runs a JSON-RPC gateway
// for other languages, and writes typed stubs of Go interfaces (tether gen,
// for a go:generate line).
//
//	tether serve [-listen addr] [-grace 10s]
//	tether health ADDR
//	tether ls ADDR [name]
//	tether call ADDR name.Method [json args...]
//	tether watch ADDR name.Method [json args...]
//	tether gateway -upstream ADDR [-listen addr]
//	tether gen -type Name[,Name...] [-o FILE] [DIR]
//
// Run "tether help", "tether help COMMAND" or "tether COMMAND -h" for the
// flags. Exit codes of gen: 0 written, 1 an interface or method cannot have
// a stub (every reason is listed), 2 bad usage. Exit codes of the others: 0
// success (and watch, serve and gateway interrupted), 1 the call failed
// (the method returned an error, or no such manager, method or argument
// shape), 2 bad usage, 3 a network failure (the server could not be
// reached or did not answer in time, or the address to listen on is
// taken), 4 authentication failed (the server, or a server behind a relay,
// refused credentials: a wrong -token or certificate; or a method returned
// an error classed unauthenticated), 5 health: the server is draining,
// 130 ls, call or health interrupted.
// A failed call's status follows its broker.Code.
package main
