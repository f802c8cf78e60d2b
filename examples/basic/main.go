package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// Users is a manager: its exported methods of the form
// M(ctx, args...) (R, error) are callable remotely.
type Users struct {
	remoteable.Referenceable
	byName map[string]User
}

// User travels by value: it is a registered Copyable.
type User struct {
	Name  string
	Email string
}

var ErrNoSuchUser = errors.New("no such user")

func init() {
	remoteable.RegisterCopyable[User]("example.User")
	remoteable.RegisterError("example.no-such-user", ErrNoSuchUser)
}

func (u *Users) Get(ctx context.Context, name string) (User, error) {
	usr, ok := u.byName[name]
	if !ok {
		return User{}, fmt.Errorf("get %q: %w", name, ErrNoSuchUser)
	}
	return usr, nil
}

// Watch calls the caller's own object back over the same connection.
func (u *Users) Watch(ctx context.Context, w *broker.Ref) error {
	for name := range u.byName {
		if err := w.Call(ctx, "Seen", nil, name); err != nil {
			return err
		}
	}
	return nil
}

// Slow waits until its caller gives up.
func (u *Users) Slow(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// watcher lives in the client and is passed to the server by reference.
type watcher struct {
	remoteable.Referenceable
	start time.Time
}

func (w *watcher) Seen(name string) error {
	say(w.start, "client: server called me back: %s is here", name)
	return nil
}

func say(start time.Time, format string, args ...any) {
	fmt.Printf("%7.2fms  %s\n", float64(time.Since(start).Microseconds())/1000, fmt.Sprintf(format, args...))
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	reg := registry.New()
	if err := reg.Register("users", &Users{byName: map[string]User{"alice": {"alice", "alice@example.org"}}}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := broker.NewServer(reg, broker.WithName("server"))
	go srv.Serve(ln)
	defer srv.Close()
	say(start, "server: publishing %v on %s", reg.Names(), ln.Addr())

	conn, err := broker.Dial(ctx, "tcp", ln.Addr().String(), broker.WithName("client"))
	if err != nil {
		return err
	}
	defer conn.Close()
	say(start, "client: connected to %q", conn.Peer().Name)

	users, err := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "users")
	if err != nil {
		return err
	}
	defer users.Release()

	alice, err := broker.Call[User](ctx, users, "Get", "alice")
	if err != nil {
		return err
	}
	say(start, "client: Get(alice) = %+v", alice)

	_, err = broker.Call[User](ctx, users, "Get", "bob")
	say(start, "client: Get(bob) failed: %v (errors.Is ErrNoSuchUser: %v)", err, errors.Is(err, ErrNoSuchUser))

	if err := users.Call(ctx, "Watch", nil, &watcher{start: start}); err != nil {
		return err
	}

	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	err = users.Call(short, "Slow", nil)
	say(start, "client: Slow() with a 50ms deadline: %v", err)

	conn.Close()
	<-conn.Done()
	say(start, "client: closed (%v)", conn.Err())
	return nil
}
