package broker

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

var errNoPrice = errors.New("no price")

func init() { remoteable.RegisterError("test.no-price", errNoPrice) }

// pricer's handler fails the way one that dials a backend does.
type pricer struct {
	remoteable.Referenceable
	backend string // an address nothing listens on
}

func (p *pricer) Price(item string) (int, error) {
	c, err := net.Dial("tcp", p.backend)
	if err == nil {
		c.Close()
		return 0, errors.New("the backend answered")
	}
	return 0, fmt.Errorf("%w: fetching the price of %s: %w", errNoPrice, item, err)
}

// TestHandlerErrorKeepsItsWordsButNotItsNetworkError: a handler's error
// that wraps a network error of the server's reaches the caller with the
// handler's own words and its registered name, the network error's text
// (addresses, the system's words) replaced by the server's announced name.
func TestHandlerErrorKeepsItsWordsButNotItsNetworkError(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	backend := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, addr := startServer(t, &pricer{backend: backend}, WithName("origin"))
	cl := dial(t, addr)

	_, err = Call[int](testkit.Ctx(t, 30*time.Second), cl.Root(), "Price", "tea")
	require.ErrorIs(t, err, errNoPrice)
	assert.Equal(t, `no price: fetching the price of tea: a network error at "origin"`, err.Error())
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "test.no-price", re.Name)
	_, port, _ := net.SplitHostPort(backend)
	assert.NotContains(t, err.Error(), port)

	_, err = (&pricer{backend: backend}).Price("tea")
	assert.Contains(t, err.Error(), backend, "in process, the error is whole")
}
