package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// The demo server's managers: a user directory with a model of its users,
// a live model of gauges that changes every tick, and sessions handed out
// by reference, so that every command has something real to talk to.

// User is a demo Copyable.
type User struct {
	Name   string    `cbor:"name" json:"name"`
	Email  string    `cbor:"email" json:"email"`
	Joined time.Time `cbor:"joined" json:"joined"`
	Tags   []string  `cbor:"tags,omitempty" json:"tags,omitempty"`
}

// ErrNoSuchUser is what Users.Get returns for an unknown name.
var ErrNoSuchUser = errors.New("no such user")

func init() {
	remoteable.RegisterCopyable[User]("demo.User")
	remoteable.RegisterError("demo.no-such-user", ErrNoSuchUser)
}

// Users is the "users" manager.
type Users struct {
	remoteable.Referenceable
	model *cache.Map[string, User]
}

// RemoteMethods declares what is safe to repeat.
func (*Users) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{
		"Get":   {Idempotent: true},
		"Names": {Idempotent: true},
		"Model": {Idempotent: true},
	}
}

// Get returns the user called name.
func (u *Users) Get(ctx context.Context, name string) (User, error) {
	usr, ok := u.model.Get(name)
	if !ok {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNoSuchUser)
	}
	return usr, nil
}

// Names lists the users, sorted.
func (u *Users) Names(ctx context.Context) ([]string, error) {
	snap, _ := u.model.Snapshot()
	names := make([]string, 0, len(snap))
	for n := range snap {
		names = append(names, n)
	}
	slices.Sort(names)
	return names, nil
}

// Add adds or replaces a user; a user without a join time joins now.
func (u *Users) Add(ctx context.Context, usr User) error {
	if strings.TrimSpace(usr.Name) == "" {
		return errors.New("a user needs a name")
	}
	if usr.Joined.IsZero() {
		usr.Joined = time.Now().UTC().Truncate(time.Second)
	}
	return u.model.Set(usr.Name, usr)
}

// Remove deletes a user.
func (u *Users) Remove(ctx context.Context, name string) error {
	if !u.model.Delete(name) {
		return fmt.Errorf("user %q: %w", name, ErrNoSuchUser)
	}
	return nil
}

// Model returns the users as a model: callers get a mirror.
func (u *Users) Model(ctx context.Context) (*cache.Map[string, User], error) { return u.model, nil }

// Login opens a session for a user: the caller gets a reference.
func (u *Users) Login(ctx context.Context, name string) (*Session, error) {
	if _, ok := u.model.Get(name); !ok {
		return nil, fmt.Errorf("user %q: %w", name, ErrNoSuchUser)
	}
	return &Session{user: name, opened: time.Now()}, nil
}

// Session is handed out by reference.
type Session struct {
	remoteable.Referenceable
	user   string
	opened time.Time

	mu    sync.Mutex
	notes []string
}

// Whoami returns the session's user.
func (s *Session) Whoami(ctx context.Context) (string, error) { return s.user, nil }

// Note records a note in the session and returns how many it holds.
func (s *Session) Note(ctx context.Context, text string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, text)
	return len(s.notes), nil
}

// Notes returns the session's notes.
func (s *Session) Notes(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notes), nil
}

// Gauges is the "gauges" manager: a live model that changes every tick.
type Gauges struct {
	remoteable.Referenceable
	model  *cache.Map[string, float64]
	uptime float64 // run's last uptime
}

// RemoteMethods declares Model and Read safe to repeat.
func (*Gauges) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Model": {Idempotent: true}, "Read": {Idempotent: true}}
}

// Model returns the gauges as a model.
func (g *Gauges) Model(ctx context.Context) (*cache.Map[string, float64], error) {
	return g.model, nil
}

// Read returns one gauge.
func (g *Gauges) Read(ctx context.Context, name string) (float64, error) {
	v, ok := g.model.Get(name)
	if !ok {
		return 0, fmt.Errorf("no gauge %q", name)
	}
	return v, nil
}

// run changes one gauge per tick until ctx ends.
func (g *Gauges) run(ctx context.Context, tick time.Duration, rnd *rand.Rand) {
	t := time.NewTicker(tick)
	defer t.Stop()
	names := []string{"load", "queue", "temperature"}
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if up := time.Since(start).Truncate(time.Second).Seconds(); up != g.uptime {
			g.uptime = up
			g.model.Set("uptime", up) //nolint:errcheck // plain floats always encode
		}
		n := names[rnd.IntN(len(names))]
		old, _ := g.model.Get(n)
		g.model.Set(n, float64(int((old*0.7+rnd.Float64()*30)*10))/10) //nolint:errcheck
	}
}

// newDemo returns the demo registry and the loop that drives its live
// model.
func newDemo() (*registry.Registry, func(ctx context.Context, tick time.Duration)) {
	users := &Users{model: cache.NewMap[string, User]()}
	joined := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for _, u := range []User{
		{Name: "alice", Email: "alice@example.com", Joined: joined, Tags: []string{"admin"}},
		{Name: "bob", Email: "bob@example.com", Joined: joined.Add(48 * time.Hour)},
	} {
		users.model.Set(u.Name, u) //nolint:errcheck // a registered Copyable always encodes
	}
	gauges := &Gauges{model: cache.NewMap[string, float64]()}
	for _, n := range []string{"load", "queue", "temperature", "uptime"} {
		gauges.model.Set(n, 0) //nolint:errcheck
	}
	reg := registry.New()
	reg.Register("users", users)   //nolint:errcheck // fresh registry, distinct names
	reg.Register("gauges", gauges) //nolint:errcheck
	return reg, func(ctx context.Context, tick time.Duration) {
		gauges.run(ctx, tick, rand.New(rand.NewPCG(1, 2)))
	}
}
