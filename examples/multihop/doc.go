// Multihop runs a chain server → relay → client and cuts the link in the
// middle, printing a transcript: typed calls through the relay, a typed
// callback from the server to the client through the relay, calls failing
// fast during the outage while the client's own connection stays up, and
// the same references working again afterwards.
//
// The client also mirrors the server's directory (a cache.Map) through the
// relay: it sees the server's changes as they happen, sees its mirror go
// stale while the middle link is down, receives the changes it missed as a
// replay from the server's log once the link is back, and finally checks
// that its mirror equals the server's model.
//
// The client uses the server's manager through its Go interface, Users:
// tether gen wrote the stubs (tether_gen.go, from the go:generate line in
// main.go), registry.LookupAs returns the stub over a lasting reference,
// and the server's Greet receives the client's object as a Greeter. Rerun
// go generate ./examples/multihop after changing an interface.
//
//	go run ./examples/multihop                      # all three in one process
//	go run ./examples/multihop -role server -listen 127.0.0.1:7000
//	go run ./examples/multihop -role relay  -listen 127.0.0.1:7001 -upstream 127.0.0.1:7000
//	go run ./examples/multihop -role client -upstream 127.0.0.1:7001
package main
