// Package typedtest holds the contract of the typed-reference tests: a
// manager interface (Users) with a typed callback parameter (Watcher), a
// result of interface type (Session), a registered error and a model
// declared as a cache.View, the manager that implements it, and the stubs
// tether gen wrote for it (tether_gen.go, committed; .ci/run regenerates
// it and fails on a difference).
//
// Its tests run one function written against these interfaces on the local
// manager, on a stub over a direct *remote.Ref and on a stub through a
// relay, and compare the three transcripts line by line; and they cut the
// link between the server and the relay to check that typed references
// and typed mirrors obtained before the cut work after it. Only tests
// import this package.
package typedtest
