package broker_test

import (
	"context"
	"fmt"
	"net"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
)

// Tenant is a manager that answers with the tenant its caller named in
// the call's metadata.
type Tenant struct{}

// Whose returns the caller's tenant.
func (*Tenant) Whose(ctx context.Context) (string, error) {
	md, _ := broker.IncomingMetadata(ctx)
	return "tenant " + md["tenant"], nil
}

// serveWith publishes a registry holding a Greeter and a Tenant with opts,
// and returns the server and its address.
func serveWith(opts ...broker.Option) (*broker.Server, string) {
	reg := registry.New()
	if err := reg.Register("greeter", &Greeter{}); err != nil {
		panic(err)
	}
	if err := reg.Register("tenant", &Tenant{}); err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(reg, opts...)
	go srv.Serve(ln)
	return srv, ln.Addr().String()
}

// A server interceptor that logs each call's method and the code of its
// result, as a server's access log would.
func ExampleWithServerInterceptors() {
	logCalls := func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		err := next(ctx, call)
		fmt.Printf("%s %s on %s: %s\n", call.Kind, call.Method, call.Target.Type, broker.CodeOf(err))
		return err
	}
	srv, addr := serveWith(broker.WithServerInterceptors(logCalls))
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
	_ = greeter.Call(ctx, "Hello", nil, "world")
	_ = greeter.Call(ctx, "Hello", nil, "")
	_ = greeter.Call(ctx, "Goodbye", nil)
	// Output:
	// method Lookup on *registry.Registry: ok
	// method Hello on *broker_test.Greeter: ok
	// method Hello on *broker_test.Greeter: unknown
	// method Goodbye on *broker_test.Greeter: unimplemented
}

// A caller sends metadata with a call, here through a client interceptor
// that names the tenant on every call; the handler reads it.
func ExampleAppendToOutgoing() {
	srv, addr := serveWith()
	defer srv.Close()
	ctx := context.Background()
	withTenant := func(ctx context.Context, call *broker.CallInfo, next broker.Invoker) error {
		return next(broker.AppendToOutgoing(ctx, "tenant", "acme"), call)
	}
	conn, err := broker.Dial(ctx, "tcp", addr, broker.WithClientInterceptors(withTenant))
	if err != nil {
		panic(err)
	}
	defer conn.Close()

	var tenant *broker.Ref
	if err := conn.Root().Call(ctx, "Lookup", &tenant, "tenant"); err != nil {
		panic(err)
	}
	fmt.Println(broker.Call[string](ctx, tenant, "Whose"))
	// A key set on the call's own context is sent too.
	fmt.Println(broker.Call[string](broker.AppendToOutgoing(ctx, "request-id", "r-1"), tenant, "Whose"))
	_, err = broker.Call[string](broker.AppendToOutgoing(ctx, "Tenant", "acme"), tenant, "Whose")
	fmt.Println(err)
	// Output:
	// tenant acme <nil>
	// tenant acme <nil>
	// tether: invalid call metadata: key "Tenant": want lower-case ASCII letters, digits, '-', '_' and '.' (calling Whose)
}
