package broker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestDuplicateCallIDsAreAProtocolViolation sends thousands of calls that
// reuse the id of a call still running. Before the fix all of them ran,
// each overwrite leaked a handler teardown never cancelled, and Close hung.
func TestDuplicateCallIDsAreAProtocolViolation(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv := NewServer(svc)
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	p := rawConnect(t, ln.Addr().String(), true)
	for i := 0; i < 5000; i++ {
		p.sendMsg(func(e *encoder) { e.buf = appendCallHead(e.buf, 1, 0, "Block", 0, 0) })
	}
	bye := p.closedWith()
	require.Error(t, bye, "the server says why it closes")
	assert.ErrorIs(t, bye, ErrProtocol)
	assert.Contains(t, bye.Error(), "call id 1 reused")
	select {
	case <-svc.started:
	default:
		t.Fatal("the first call never ran")
	}
	assert.Len(t, svc.started, 0, "no call with the reused id ran")

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Server.Close hangs on handlers teardown never cancelled")
	}
	require.ErrorIs(t, <-served, ErrServerClosed)
}
