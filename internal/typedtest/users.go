package typedtest

//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Users,Session,Watcher

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/remoteable"
)

// Users is the manager's contract: code written against it runs the same
// on the manager itself and on its stub, however many hops away.
type Users interface {
	// Get returns the user called name, or an error matching
	// ErrNoSuchUser.
	Get(ctx context.Context, name string) (User, error)
	// Login opens a session for the user called name: the caller receives
	// it by reference.
	Login(ctx context.Context, name string) (Session, error)
	// Owns reports whether sess is one of this manager's own sessions: a
	// session's stub sent home arrives as the session itself.
	Owns(ctx context.Context, sess Session) (bool, error)
	// Watch makes w hear of every change of the directory, before the
	// call that made it returns.
	Watch(ctx context.Context, w Watcher) error
	// Remove deletes the user called name.
	Remove(ctx context.Context, name string) error
	// Directory returns the directory: the model on the server, a mirror
	// of it through a stub.
	Directory(ctx context.Context) (cache.View[string, User], error)
}

// Session is what Login returns: it travels by reference.
type Session interface {
	// Name returns the name of the session's user.
	Name(ctx context.Context) (string, error)
	// SetEmail changes the session's user's email in the directory.
	SetEmail(ctx context.Context, email string) error
}

// Watcher is the callback Watch takes: the caller's object, called back
// by the manager wherever the caller is.
type Watcher interface {
	// Seen tells the watcher what happened.
	Seen(ctx context.Context, event string) error
}

// User travels by value.
type User struct {
	Name  string
	Email string
}

// ErrNoSuchUser crosses the wire: errors.Is holds for the caller.
var ErrNoSuchUser = errors.New("no such user")

// init registers what crosses the wire by name.
func init() {
	remoteable.RegisterCopyable[User]("typedtest.User")
	remoteable.RegisterError("typedtest.no-such-user", ErrNoSuchUser)
}

// Manager is the manager behind Users: a directory model and the
// watchers to tell of its changes.
type Manager struct {
	remoteable.Referenceable
	// Dir is the directory, exported so that tests can change it and
	// compare a mirror with it.
	Dir      *cache.Map[string, User]
	mu       sync.Mutex
	watchers []Watcher
}

var _ Users = (*Manager)(nil)

// NewManager returns a manager with alice and bob in its directory
// (version 2).
func NewManager() *Manager {
	m := &Manager{Dir: cache.NewMap[string, User]()}
	for _, name := range []string{"alice", "bob"} {
		if err := m.Dir.Set(name, User{Name: name, Email: name + "@example.org"}); err != nil {
			panic(err) // a User always encodes
		}
	}
	return m
}

// RemoteMethods declares the lookups safe to repeat, so that a session
// and a mirror obtained through them are obtained again after an outage.
func (*Manager) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}, "Login": {Idempotent: true}, "Directory": {Idempotent: true}}
}

// Get returns the user called name.
func (m *Manager) Get(_ context.Context, name string) (User, error) {
	u, ok := m.Dir.Get(name)
	if !ok {
		return User{}, fmt.Errorf("get %q: %w", name, ErrNoSuchUser)
	}
	return u, nil
}

// Login opens a session for a user of the directory.
func (m *Manager) Login(ctx context.Context, name string) (Session, error) {
	if _, err := m.Get(ctx, name); err != nil {
		return nil, err
	}
	return &session{m: m, name: name}, nil
}

// Owns reports whether sess is a session this manager opened.
func (m *Manager) Owns(_ context.Context, sess Session) (bool, error) {
	own, ok := sess.(*session)
	return ok && own.m == m, nil
}

// Watch adds w to the watchers.
func (m *Manager) Watch(_ context.Context, w Watcher) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watchers = append(m.watchers, w)
	return nil
}

// Remove deletes a user and tells the watchers.
func (m *Manager) Remove(ctx context.Context, name string) error {
	if !m.Dir.Delete(name) {
		return fmt.Errorf("remove %q: %w", name, ErrNoSuchUser)
	}
	return m.tell(ctx, name+" left")
}

// Directory returns the directory model.
func (m *Manager) Directory(context.Context) (cache.View[string, User], error) { return m.Dir, nil }

// tell calls every watcher with event, in the order they came, and
// returns the first failure.
func (m *Manager) tell(ctx context.Context, event string) error {
	m.mu.Lock()
	ws := append([]Watcher(nil), m.watchers...)
	m.mu.Unlock()
	for _, w := range ws {
		if err := w.Seen(ctx, event); err != nil {
			return fmt.Errorf("telling a watcher %q: %w", event, err)
		}
	}
	return nil
}

// session is the Session Login hands out.
type session struct {
	remoteable.Referenceable
	m    *Manager
	name string
}

// Name returns the session's user's name.
func (s *session) Name(context.Context) (string, error) { return s.name, nil }

// SetEmail changes the user's email and tells the watchers.
func (s *session) SetEmail(ctx context.Context, email string) error {
	if err := s.m.Dir.Set(s.name, User{Name: s.name, Email: email}); err != nil {
		return err
	}
	return s.m.tell(ctx, s.name+" is now "+email)
}
