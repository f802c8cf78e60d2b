// Package main is the bench command: it runs every workload against Tether
// and its peers (net/rpc, gRPC, drpc, Cap'n Proto and NATS) in the same run,
// over loopback TCP in one process, and prints tables followed by
// machine-readable lines:
//
//	RATIO <workload> <peer> <tether/peer>      (above 1: Tether better)
//	SPREAD <workload> <peer> <min> <max> <rounds>
//	FIGURE <workload> <system> <metric> <median> <unit>
//	ALLOCS <system> <allocations per 64-byte call, both sides>
//	BYTES <system> <heap bytes per 64-byte call, both sides>
//
// Run it from this directory:
//
//	go run . [-quick] [-rounds N] [-duration D] [-only SUBSTRING]
//	         [-fanout-sets W] [-idle-conns N,N] [-idle-for D] [-storm-clients N]
//
// The default is five rounds with the median of each; -quick is one short
// round with smaller scale cells. Inside each cell the systems run one after
// the other, round by round, and every ratio comes with its range across
// rounds. The call workloads are unary echo (64 B to 1 MiB), fetch-then-call,
// callbacks and allocations per call (runner.go); the scale workloads are
// relay hops, fan-out of one model to many mirrors against NATS pub/sub, idle
// connections against gRPC and NATS, and a reconnect storm (scale*.go).
// docs/benchmarks.md explains them and records results.
//
// It is a module of its own so that users of Tether never download the
// peers it compares against.
package main
