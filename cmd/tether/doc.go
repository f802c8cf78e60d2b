// Command tether talks to Tether servers from a shell: it serves a demo,
// lists managers and their methods, describes the types they take, calls
// methods with JSON arguments, watches models change, asks a server's
// health, runs a JSON-RPC gateway for other languages, and writes typed
// stubs of Go interfaces, for a package's go:generate line.
//
//	tether serve [-listen addr] [-grace 10s]
//	tether health ADDR
//	tether ls ADDR [name]
//	tether describe ADDR NAME
//	tether call ADDR name.Method [json args...]
//	tether call -d @- ADDR name.Method < args.json
//	tether watch ADDR name.Method [json args...]
//	tether gateway -upstream ADDR [-listen addr]
//	tether gen -type Name[,Name...] [-o FILE] [DIR]
//	tether version
//
// Run "tether help", "tether help COMMAND" or "tether COMMAND -h" for the
// flags, which may come anywhere ("--" ends them). An argument of call or
// watch is a JSON value, converted as the gateway converts params; one
// that is not valid JSON is taken as a string. Exit codes of gen: 0
// written, 1 an interface or method cannot have a stub (every reason is
// listed), 2 bad usage. Exit codes of the others: 0 success (and watch,
// serve and gateway interrupted), 1 the call failed (the method returned
// an error, or no such manager, method, type or argument shape), 2 bad
// usage (always: the message says what is wrong), 3 a network failure (the
// server could not be reached or did not answer in time, or the address to
// listen on is taken), 4 authentication failed (the server, or a server
// behind a relay, refused credentials: a wrong -token or certificate; or a
// method returned an error classed unauthenticated), 5 health: the server
// is draining, 130 ls, describe, call or health interrupted.
// A failed call's status follows its broker.Code.
package main
