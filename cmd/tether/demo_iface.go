package main

//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Directory,Meter -o demo_gen.go

import "context"

// The demo's contracts in Go: its managers implement these interfaces and
// demo_gen.go registers their stubs, so that the demo server's Describe,
// and tether ls, list them in Go syntax. (go generate builds this command
// to run tether gen: if a change of an interface leaves demo_gen.go
// failing to compile, delete it before running go generate.)

// Directory is what the "users" manager offers besides its model and its
// sessions.
type Directory interface {
	// Get returns the user called name, or an error matching
	// ErrNoSuchUser.
	Get(ctx context.Context, name string) (User, error)
	// Names returns the users' names.
	Names(ctx context.Context) ([]string, error)
	// Add adds a user.
	Add(ctx context.Context, usr User) error
	// Remove removes a user.
	Remove(ctx context.Context, name string) error
}

// Meter reads one of the "gauges" manager's gauges.
type Meter interface {
	// Read returns the gauge's current value.
	Read(ctx context.Context, name string) (float64, error)
}

var (
	_ Directory = (*Users)(nil)
	_ Meter     = (*Gauges)(nil)
)
