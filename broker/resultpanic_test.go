package broker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// explodingResult encodes as a plain integer, and panics when decoded: a
// user type's decoding bug.
type explodingResult struct{}

func (explodingResult) MarshalCBOR() ([]byte, error) { return cborx.AppendUint(nil, 1), nil }
func (*explodingResult) UnmarshalCBOR([]byte) error  { panic("the result's decoder blew up") }

type explodingService struct{}

func (explodingService) Get() (explodingResult, error) { return explodingResult{}, nil }

// TestResultWhoseDecodingPanicsFailsTheCall: a panic while the reader
// decodes a result is recovered by handleFrame and ends the connection;
// the call the result answers, already taken out of the pending table,
// must fail with it rather than wait for ever (it did: neither teardown
// nor the caller's own deadline reached it, abandon waited on its done).
func TestResultWhoseDecodingPanicsFailsTheCall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, explodingService{})
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(testkit.Ctx(t, 30*time.Second), 2*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		var r explodingResult
		errc <- c.Root().Call(ctx, "Get", &r)
	}()
	select {
	case err := <-errc:
		require.Error(t, err)
		assert.ErrorIs(t, err, ErrProtocol)
		assert.Contains(t, err.Error(), "the result's decoder blew up")
	case <-time.After(10 * time.Second):
		t.Fatal("the call whose result could not be decoded never returned, not even at its deadline")
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	assert.ErrorIs(t, c.Err(), ErrProtocol, "the decoding bug ends this connection, as before")
}

// explodingEncoding panics when encoded: a user type's encoding bug.
type explodingEncoding struct{}

func (explodingEncoding) MarshalCBOR() ([]byte, error) { panic("the result's encoder blew up") }
func (*explodingEncoding) UnmarshalCBOR([]byte) error  { return nil }

type explodingEncodingService struct{}

func (explodingEncodingService) Get() (explodingEncoding, error) { return explodingEncoding{}, nil }

// TestResultWhoseEncodingPanicsFailsTheCall: a handler's result is
// encoded on the handler's goroutine, after the handler's own recovery; a
// panic there (in a type's MarshalCBOR) took the whole server process
// down. It fails that call with ErrPanic, and the connection goes on.
func TestResultWhoseEncodingPanicsFailsTheCall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, explodingEncodingService{})
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	var r explodingEncoding
	err := c.Root().Call(ctx, "Get", &r)
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrPanic)
	assert.Contains(t, err.Error(), "the result's encoder blew up")
	require.NoError(t, c.Root().Call(ctx, DescribeMethod, nil), "the connection is still up")
}
