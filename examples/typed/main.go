package main

//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Users

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// Users is the contract between the manager and its callers, local or
// remote.
type Users interface {
	Get(ctx context.Context, name string) (User, error)
	Add(ctx context.Context, users ...User) error
	Count() (int, error)
}

// User travels by value.
type User struct {
	Name  string
	Email string
}

// ErrNoSuchUser crosses the wire: errors.Is holds for the caller.
var ErrNoSuchUser = errors.New("no such user")

func init() { remoteable.RegisterError("typed.no-such-user", ErrNoSuchUser) }

// userTable is the manager: it implements Users.
type userTable struct {
	remoteable.Referenceable
	byName map[string]User
}

var _ Users = (*userTable)(nil)

// Get returns the user called name.
func (t *userTable) Get(ctx context.Context, name string) (User, error) {
	u, ok := t.byName[name]
	if !ok {
		return User{}, fmt.Errorf("get %q: %w", name, ErrNoSuchUser)
	}
	return u, nil
}

// Add adds users.
func (t *userTable) Add(ctx context.Context, users ...User) error {
	for _, u := range users {
		t.byName[u.Name] = u
	}
	return nil
}

// Count returns the number of users.
func (t *userTable) Count() (int, error) { return len(t.byName), nil }

// useUsers is written against the interface alone: it runs the same on
// the local manager and on the stub of a remote one.
func useUsers(ctx context.Context, w io.Writer, users Users) error {
	if err := users.Add(ctx, User{"alice", "alice@example.org"}, User{"bob", "bob@example.org"}); err != nil {
		return err
	}
	n, err := users.Count()
	if err != nil {
		return err
	}
	alice, err := users.Get(ctx, "alice")
	if err != nil {
		return err
	}
	_, err = users.Get(ctx, "zoe")
	fmt.Fprintf(w, "%d users; alice is %s; zoe: no such user: %v\n", n, alice.Email, errors.Is(err, ErrNoSuchUser))
	return nil
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run uses a local manager, then a remote one through its stub.
func run(w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Fprint(w, "local:  ")
	if err := useUsers(ctx, w, &userTable{byName: map[string]User{}}); err != nil {
		return err
	}

	reg := registry.New()
	if err := reg.Register("users", &userTable{byName: map[string]User{}}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()
	conn, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer func() { conn.Close(); <-conn.Done() }()

	ref, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "users")
	if err != nil {
		return err
	}
	users, err := remoteable.As[Users](ref) // the stub tether gen wrote
	if err != nil {
		return err
	}
	fmt.Fprint(w, "remote: ")
	return useUsers(ctx, w, users)
}
