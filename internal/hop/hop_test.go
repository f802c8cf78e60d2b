package hop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
)

type down struct{ addr string }

func (d down) Error() string              { return "disconnected: " + d.addr + ": connection refused" }
func (d down) Redacted(hop string) string { return "disconnected: " + hop + " cannot reach its server" }

func TestRedact(t *testing.T) {
	op := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 4567}, Err: errors.New("connect: connection refused")}
	for _, c := range []struct {
		name    string
		err     error
		want    string
		changed bool
	}{
		{"plain", errors.New("sold out"), "sold out", false},
		{"context", fmt.Errorf("waiting: %w", context.DeadlineExceeded), "waiting: context deadline exceeded", false},
		{"network, wrapped", fmt.Errorf("fetching price: %w", op), "fetching price: a network error at \"edge\"", true},
		{"failure", down{"10.1.2.3:4567"}, "disconnected: relay \"edge\" cannot reach its server", true},
		{"failure, wrapped", fmt.Errorf("loading: %w", down{"10.1.2.3:4567"}), "loading: disconnected: relay \"edge\" cannot reach its server", true},
		{"joined", errors.Join(errors.New("first"), op), "first\na network error at \"edge\"", true},
		{"text not found", fmt.Errorf("odd %v: %w", "10.1.2.3", wrapped{op}), "a network error at \"edge\"", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changed := Redact(c.err, Self{Name: "edge", Role: "relay"})
			assert.Equal(t, c.want, got)
			assert.Equal(t, c.changed, changed)
			assert.NotContains(t, got, "10.1.2.3")
			assert.NotContains(t, got, "4567")
		})
	}
	assert.Equal(t, "the gateway", Self{Role: "gateway"}.Hop())
	got, _ := Redact(fmt.Errorf("x: %w", op), Self{Role: "relay"})
	assert.Equal(t, "x: a network error", got)
}

// wrapped hides its cause's text: the message cannot be edited around it.
type wrapped struct{ err error }

func (w wrapped) Error() string { return "something else" }
func (w wrapped) Unwrap() error { return w.err }
