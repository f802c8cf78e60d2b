package brokertest

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/testkit"
)

// dialPatience bounds Dial's handshake and the context it hands the
// connection.
const dialPatience = 30 * time.Second

// Listen returns a TCP listener on a free loopback port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: listen: %v", err)
	}
	return ln
}

// Serve serves root on a free loopback port and returns the server and its
// address. When the test ends the server is closed and Serve must have
// returned ErrServerClosed.
func Serve(t testing.TB, root any, opts ...broker.Option) (*broker.Server, string) {
	t.Helper()
	ln := Listen(t)
	return ServeOn(t, ln, root, opts...), ln.Addr().String()
}

// ServeOn serves root on ln, as Serve does.
func ServeOn(t testing.TB, ln net.Listener, root any, opts ...broker.Option) *broker.Server {
	t.Helper()
	srv := broker.NewServer(root, opts...)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("brokertest: closing the server: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("brokertest: Serve returned %v, want ErrServerClosed", err)
		}
	})
	return srv
}

// Dial connects to the broker server at addr. When the test ends the
// connection is closed and its loops have stopped.
func Dial(t testing.TB, addr string, opts ...broker.Option) *broker.Conn {
	t.Helper()
	c, err := broker.Dial(testkit.Ctx(t, dialPatience), "tcp", addr, opts...)
	if err != nil {
		t.Fatalf("brokertest: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c
}
