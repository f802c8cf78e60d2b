package registry

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remoteable"
)

// ErrNotFound is returned by Lookup for a name nobody registered. It is
// registered with remoteable, so a remote caller can test for it with
// errors.Is too.
var ErrNotFound = broker.NewError(broker.NotFound, errors.New("tether: no such manager"))

// ErrExists is returned by Register for a name already taken.
var ErrExists = broker.NewError(broker.InvalidArgument, errors.New("tether: name already registered"))

func init() {
	remoteable.RegisterError("tether.registry.not-found", ErrNotFound)
	remoteable.RegisterError("tether.registry.exists", ErrExists)
}

// Registry maps names to managers. It is safe for concurrent use and is
// itself Referenceable, so it can be published and passed around.
type Registry struct {
	remoteable.Referenceable

	upstream Upstream
	mu       sync.RWMutex
	managers map[string]any
}

// Upstream is a registry further up a chain of processes — a
// remote.Registry — whose managers a local registry can offer too.
type Upstream interface {
	// Resolve returns the manager registered under name upstream.
	Resolve(ctx context.Context, name string) (any, error)
	// List returns the names registered upstream.
	List(ctx context.Context) ([]string, error)
}

// Option configures New.
type Option interface{ apply(*Registry) }

type optionFunc func(*Registry)

func (f optionFunc) apply(r *Registry) { f(r) }

// WithUpstream makes the registry fall back to up: Lookup tries the local
// managers first, then the upstream registry, and List returns both. This is
// how a relay mixes its own managers with those it republishes.
func WithUpstream(up Upstream) Option {
	return optionFunc(func(r *Registry) { r.upstream = up })
}

// New returns an empty registry.
func New(opts ...Option) *Registry {
	r := &Registry{managers: map[string]any{}}
	for _, o := range opts {
		if o != nil {
			o.apply(r)
		}
	}
	return r
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
//
// A manager declared by mistake is refused with an error matching
// broker.ErrNotCallable that names the type and the method and says what
// to change (see broker.VerifyCallable): one with no remotely callable
// method (a value whose methods have pointer receivers, say), one whose
// RemoteMethods names a method it does not have or that cannot be called
// remotely, one with a method that takes a context.Context elsewhere than
// first. Other exported methods that cannot be called remotely are
// skipped, and its description lists them with the reason.
func (r *Registry) Register(name string, manager any) error {
	if name == "" {
		return errors.New("tether: registering a manager under an empty name: give it a name")
	}
	if manager != nil && !reflect.TypeOf(manager).Comparable() {
		return &registerError{name: name, err: broker.ErrNotCallable,
			msg: fmt.Sprintf("%T cannot be handed out by reference: register a pointer", manager)}
	}
	if err := broker.VerifyCallable(manager); err != nil {
		return &registerError{name: name, err: err}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.managers[name]; ok {
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	r.managers[name] = manager
	return nil
}

// registerError is a manager refused by Register: the broker's error, said
// of the name it was to be registered under.
type registerError struct {
	name string
	err  error
	msg  string // what is wrong, if err does not say it
}

func (e *registerError) Error() string {
	msg := e.msg
	if msg == "" {
		msg = strings.TrimPrefix(e.err.Error(), "tether: ")
	}
	return fmt.Sprintf("tether: registering %q: %s", e.name, msg)
}

func (e *registerError) Unwrap() error { return e.err }

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

// Lookup returns the manager registered under name (locally first, then
// upstream), or an error matching ErrNotFound. Called remotely, the caller
// receives a reference to it.
func (r *Registry) Lookup(ctx context.Context, name string) (any, error) {
	r.mu.RLock()
	m, ok := r.managers[name]
	r.mu.RUnlock()
	if ok {
		return m, nil
	}
	if r.upstream != nil {
		return r.upstream.Resolve(ctx, name)
	}
	return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
}

// Names returns the locally registered names, sorted.
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

// List returns the local names and, with an upstream, the upstream ones,
// sorted and without duplicates. If the upstream cannot be asked, List
// returns the local names and the error.
func (r *Registry) List(ctx context.Context) ([]string, error) {
	names := r.Names()
	if r.upstream == nil {
		return names, nil
	}
	up, err := r.upstream.List(ctx)
	if err != nil {
		return names, fmt.Errorf("%w (asking the upstream registry for its names)", err)
	}
	names = append(names, up...)
	slices.Sort(names)
	return slices.Compact(names), nil
}
