// Package main is the bench command: it runs every workload against Tether
// and its peers (net/rpc, gRPC, drpc, Cap'n Proto and NATS request/reply) in
// the same run, over loopback TCP in one process, and prints a table followed
// by one machine-readable line per comparison:
//
//	RATIO <workload> <peer> <tether/peer>
//	ALLOCS <system> <allocations per 64-byte call, both sides>
//
// Run it from this directory:
//
//	go run . [-quick] [-rounds N] [-duration D] [-only SUBSTRING]
//
// The default is five rounds with the median of each; -quick is one short
// round, under a minute. The workloads are unary echo, fetch-then-call,
// callbacks, and allocations per call; docs/benchmarks.md explains them and
// records results.
//
// It is a module of its own so that users of Tether never download the
// peers it compares against.
package main
