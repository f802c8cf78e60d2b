package broker

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestOptionsForTheOtherSideAreRefused checks that an option meant for one
// side is an error on the other, naming the option, never ignored.
func TestOptionsForTheOtherSideAreRefused(t *testing.T) {
	leakcheck.Check(t)
	srv := NewServer(newService(), WithRoot(newService()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = srv.Serve(ln)
	require.Error(t, err)
	assert.ErrorContains(t, err, "WithRoot applies to a dialer")
	assert.NoError(t, VerifyDialOptions(WithRoot(newService()), WithName("x")))
}

// TestWithTLSOnAServerServesTLS checks that a server given WithTLS speaks
// TLS over a plain listener instead of serving plaintext, and that a
// plaintext dialer is refused.
func TestWithTLSOnAServerServesTLS(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, cliCfg := tlsConfigs(t)
	_, addr := startServer(t, newService(), WithTLS(srvCfg))
	c := dial(t, addr, WithTLS(cliCfg))
	require.NotNil(t, c.Peer().TLS, "the connection runs TLS")
	var s string
	require.NoError(t, c.Root().Call(testCtx(t), "Concat", &s, "a", "b"))
	assert.Equal(t, "ab", s)

	ctx := testCtx(t)
	_, err := Dial(ctx, "tcp", addr, WithHandshakeTimeout(2e9))
	assert.Error(t, err, "a plaintext dialer does not get through")

	noCert := NewServer(newService(), WithTLS(&tls.Config{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorContains(t, noCert.Serve(ln), "needs a certificate")
}
