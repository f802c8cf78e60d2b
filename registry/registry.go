package registry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/tether-go/tether/remoteable"
)

// ErrNotFound is returned by Lookup for a name nobody registered. It is
// registered with remoteable, so a remote caller can test for it with
// errors.Is too.
var ErrNotFound = errors.New("registry: no such manager")

// ErrExists is returned by Register for a name already taken.
var ErrExists = errors.New("registry: name already registered")

func init() {
	remoteable.RegisterError("tether.registry.not-found", ErrNotFound)
	remoteable.RegisterError("tether.registry.exists", ErrExists)
}

// Registry maps names to managers. It is safe for concurrent use and is
// itself Referenceable, so it can be published and passed around.
type Registry struct {
	remoteable.Referenceable

	mu       sync.RWMutex
	managers map[string]any
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{managers: map[string]any{}}
}

// RemoteMethods declares Lookup's result to travel by reference and keeps
// Register and Unregister local.
func (r *Registry) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{
		"Lookup":     {Idempotent: true, ByReference: true},
		"List":       {Idempotent: true},
		"Register":   {Local: true},
		"Unregister": {Local: true},
	}
}

// Register publishes manager under name. The manager may be any value with
// remotely callable methods (see package remoteable); it must be a pointer
// or another comparable value, since it is handed out by reference.
func (r *Registry) Register(name string, manager any) error {
	if name == "" {
		return errors.New("registry: empty name")
	}
	if manager == nil {
		return errors.New("registry: nil manager")
	}
	if !reflect.TypeOf(manager).Comparable() {
		return fmt.Errorf("registry: %T cannot be handed out by reference: register a pointer", manager)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.managers[name]; ok {
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	r.managers[name] = manager
	return nil
}

// Unregister removes name. References already handed out keep working.
func (r *Registry) Unregister(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.managers[name]; !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(r.managers, name)
	return nil
}

// Lookup returns the manager registered under name, or an error matching
// ErrNotFound. Called remotely, the caller receives a reference to it.
func (r *Registry) Lookup(ctx context.Context, name string) (any, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.managers[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return m, nil
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.managers))
	for n := range r.managers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// List is Names for remote callers (a remotely callable method returns an
// error too).
func (r *Registry) List(ctx context.Context) ([]string, error) {
	return r.Names(), nil
}
