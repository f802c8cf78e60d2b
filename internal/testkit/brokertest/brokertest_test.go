package brokertest_test

import (
	"context"
	"testing"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/remoteable"
)

// greeter is the object the test publishes.
type greeter struct{ remoteable.Referenceable }

func (greeter) Hello(ctx context.Context, name string) (string, error) { return "hello " + name, nil }

// TestServeAndDialCleanUp: a call goes through the pair, and at the end of
// the test both ends are closed with nothing left running.
func TestServeAndDialCleanUp(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := brokertest.Serve(t, &greeter{})
	c := brokertest.Dial(t, addr)
	got, err := broker.Call[string](testkit.Ctx(t, 10*time.Second), c.Root(), "Hello", "you")
	if err != nil || got != "hello you" {
		t.Fatalf("Hello = %q, %v", got, err)
	}
	testkit.Eventually(t, "the server to count the connection", func() bool { return srv.Stats().Conns == 1 })
}
