// Package soak holds Tether's chaos soak test: a server, a relay and
// several clients under continuous load while a seeded schedule of faults
// breaks their links and restarts the server. It has no code of its own;
// run it with
//
//	go test -race -run Soak ./internal/soak -soak.duration=60s [-soak.seed=N]
//
// See soak_test.go for what it checks.
package soak
