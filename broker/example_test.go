package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// Greeter is a manager: an object with remotely callable methods.
type Greeter struct{}

func (*Greeter) Hello(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", ErrNoName
	}
	return "Hello, " + name, nil
}

// Subscribe calls back the listener the caller passed, over the same link.
func (*Greeter) Subscribe(ctx context.Context, l *broker.Ref) error {
	return l.Call(ctx, "Notify", nil, "you are subscribed")
}

var ErrNoName = errors.New("greeter: no name")

func init() { remoteable.RegisterError("example.no-name", ErrNoName) }

// serve publishes a registry holding a Greeter and returns its address.
func serve() (*broker.Server, string) {
	reg := registry.New()
	if err := reg.Register("greeter", &Greeter{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	return srv, ln.Addr().String()
}

// A server publishes a registry; a client dials it, looks a manager up and
// calls it.
func Example() {
	srv, addr := serve()
	defer srv.Close()
	ctx := context.Background()

	conn, err := broker.Dial(ctx, "tcp", addr)
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	var greeter *broker.Ref
	if err := conn.Root().Call(ctx, "Lookup", &greeter, "greeter"); err != nil {
		panic(err)
	}
	msg, err := broker.Call[string](ctx, greeter, "Hello", "world")
	fmt.Println(msg, err)
	// Output: Hello, world <nil>
}

func ExampleDial() {
	srv, addr := serve()
	defer srv.Close()
	ctx := context.Background()

	conn, err := broker.Dial(ctx, "tcp", addr, broker.WithName("example-client"))
	if err != nil {
		panic(err)
	}
	var names []string
	err = conn.Root().Call(ctx, "List", &names)
	fmt.Println(names, err)
	conn.Close()
	<-conn.Done()
	fmt.Println(conn.Err())
	// Output:
	// [greeter] <nil>
	// tether: closed
}

func ExampleServer_Serve() {
	reg := registry.New()
	reg.Register("greeter", &Greeter{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(reg, broker.WithName("greetings"), broker.WithToken("s3cret"))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	ctx := context.Background()
	_, err = broker.Dial(ctx, "tcp", ln.Addr().String(), broker.WithToken("wrong"))
	fmt.Println(errors.Is(err, broker.ErrAuthFailed))

	srv.Close()
	fmt.Println(<-done)
	// Output:
	// true
	// tether: server closed
}

func ExampleCall() {
	srv, addr := serve()
	defer srv.Close()
	ctx := context.Background()
	conn, _ := broker.Dial(ctx, "tcp", addr)
	defer conn.Close()
	greeter, _ := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "greeter")

	// A registered error keeps its identity across the wire.
	_, err := broker.Call[string](ctx, greeter, "Hello", "")
	fmt.Println(errors.Is(err, ErrNoName), err)

	var re *broker.RemoteError
	_, err = broker.Call[string](ctx, greeter, "Goodbye")
	fmt.Println(errors.As(err, &re), errors.Is(err, broker.ErrUnknownMethod))
	// Output:
	// true greeter: no name
	// true true
}

// Listener is a client-side object the server calls back.
type Listener struct {
	remoteable.Referenceable
	got []string
}

func (l *Listener) Notify(msg string) error {
	l.got = append(l.got, strings.ToUpper(msg))
	return nil
}

// Either side can pass its own objects; the other side calls them back over
// the same connection.
func ExampleRef_Call_callback() {
	srv, addr := serve()
	defer srv.Close()
	ctx := context.Background()
	conn, _ := broker.Dial(ctx, "tcp", addr)
	defer conn.Close()
	greeter, _ := broker.Call[*broker.Ref](ctx, conn.Root(), "Lookup", "greeter")

	l := &Listener{}
	err := greeter.Call(ctx, "Subscribe", nil, l)
	fmt.Println(l.got, err)
	// Output: [YOU ARE SUBSCRIBED] <nil>
}

// Vault lets only its owner open it.
type Vault struct{ remoteable.Referenceable }

func (*Vault) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("owner") }

func (*Vault) Open(ctx context.Context) (string, error) {
	p, _ := remoteable.PeerFrom(ctx)
	return "opened for " + p.Identity().String(), nil
}

// A server verifies each peer by its own token; a policy admits verified
// names only, so announcing "owner" without the owner's token gets nothing.
func ExampleTokens() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(&Vault{}, broker.WithAuthenticator(broker.Tokens(map[string]string{
		"owner": "owner-secret",
	})))
	go srv.Serve(ln)
	defer srv.Close()
	ctx := context.Background()

	owner, err := broker.Dial(ctx, "tcp", ln.Addr().String(), broker.WithName("owner"), broker.WithToken("owner-secret"))
	if err != nil {
		panic(err)
	}
	defer owner.Close()
	s, err := broker.Call[string](ctx, owner.Root(), "Open")
	fmt.Println(s, err)

	_, err = broker.Dial(ctx, "tcp", ln.Addr().String(), broker.WithName("owner"), broker.WithToken("guess"))
	fmt.Println(errors.Is(err, broker.ErrAuthFailed))
	// Output:
	// opened for "owner" (verified by token) <nil>
	// true
}

// ExampleCodeOf classifies errors: the package's sentinels, context errors
// and an application's own errors classified with NewError. A caller gets
// the same code for an error a handler returned, through any relays.
func ExampleCodeOf() {
	errNoUser := broker.NewError(broker.NotFound, errors.New("users: no such user"))
	for _, err := range []error{
		nil,
		fmt.Errorf("looking up bob: %w", errNoUser),
		fmt.Errorf("%w: Get takes 1 argument, got 2", broker.ErrBadArguments),
		broker.ErrConnectionLost,
		context.DeadlineExceeded,
		errors.New("something of the application's own"),
	} {
		fmt.Println(broker.CodeOf(err))
	}
	// Output:
	// ok
	// not_found
	// invalid_argument
	// unavailable
	// deadline_exceeded
	// unknown
}
