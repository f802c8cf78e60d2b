// Package main is the bench command: it runs every workload against Tether
// and its peers (net/rpc, gRPC, drpc, Cap'n Proto and NATS request/reply) in
// the same run, over loopback TCP in one process, and prints a table followed
// by one machine-readable line per comparison:
//
//	RATIO <workload> <peer> <tether/peer>
//	ALLOCS <system> <allocations per 64-byte call, both sides>
//
// Run it from this directory: `go run .` (five rounds, median of each) or
// `go run . -quick` (one short round, under a minute). docs/benchmarks.md
// explains the workloads and records results.
//
// It is a module of its own so that users of Tether never download the
// peers it compares against.
package main
