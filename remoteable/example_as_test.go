package remoteable_test

import (
	"context"
	"fmt"
	"net"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remoteable"
)

// ExampleAs publishes an object implementing Greeter (whose stub, written
// by hand in this package's tests as tether gen would write it, is
// registered in an init function) and calls it through a typed reference:
// the same code runs against the local object.
func ExampleAs() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := broker.NewServer(englishGreeter{})
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	conn, err := broker.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		panic(err)
	}
	defer func() { conn.Close(); <-conn.Done() }()

	greet := func(g Greeter) {
		s, err := g.Greet(ctx, "alice")
		fmt.Printf("%T: %s %v\n", g, s, err)
	}
	remote, err := remoteable.As[Greeter](conn.Root()) // a *broker.Ref: the stub over it
	if err != nil {
		panic(err)
	}
	greet(remote)
	local, _ := remoteable.As[Greeter](englishGreeter{}) // a local value: itself
	greet(local)

	_, err = remoteable.As[Unstubbed](conn.Root())
	fmt.Println(err)
	// Output:
	// *remoteable_test.greeterStub: hi alice <nil>
	// remoteable_test.englishGreeter: hi alice <nil>
	// tether: no stub registered for remoteable_test.Unstubbed: run `tether gen -type Unstubbed` in its package (github.com/tether-go/tether/remoteable_test)
}
