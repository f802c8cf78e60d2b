package broker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestHandshakeTextsMustBeUTF8: a name or a token that is not valid UTF-8
// travels as CBOR text in the handshake, which the peer would refuse as a
// protocol violation (a dialer would see its link cut, an outage rather
// than a mistake). Dial and NewServer refuse it at once with
// ErrInvalidOption, naming the option.
func TestHandshakeTextsMustBeUTF8(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	ctx := testkit.Ctx(t, 20*time.Second)
	for _, tc := range []struct {
		opt  Option
		name string
	}{{WithToken("s3\xffcret"), "WithToken"}, {WithName("edge-\xfe"), "WithName"}} {
		c, err := Dial(ctx, "tcp", addr, tc.opt)
		if c != nil {
			c.Close()
		}
		require.ErrorIs(t, err, ErrInvalidOption, "%s", tc.name)
		assert.Contains(t, err.Error(), tc.name)
		assert.Contains(t, err.Error(), "UTF-8")
	}
	// A server's name goes in its Welcome: Serve refuses to start.
	bad := NewServer(newService(), WithName("origin-\xff"))
	err := bad.Serve(listen(t))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "WithName")
}
