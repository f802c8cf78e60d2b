package broker

import (
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

type tooDeepResult struct{}

func (tooDeepResult) Deep() (any, error) {
	var v any = 1
	for i := 0; i < 40; i++ {
		v = []any{v}
	}
	return v, nil
}

// TestUnsendableResultSaysTetherOnce: a result the server cannot send
// (nested too deeply) reaches the caller as ErrTooDeep whose message
// starts "tether:" once, not "tether: cannot send result: tether: value
// nested too deeply".
func TestUnsendableResultSaysTetherOnce(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, tooDeepResult{})
	c := dial(t, addr)
	err := c.Root().Call(testkit.Ctx(t, 30*time.Second), "Deep", nil)
	require.ErrorIs(t, err, ErrTooDeep)
	assert.Equal(t, InvalidArgument, CodeOf(err))
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "a repeated prefix: %v", err)
	assert.Contains(t, err.Error(), "cannot send result")
}

// TestHandshakeViolationSaysTetherOnce: a peer that breaks the protocol
// before its handshake (a second stream) is logged with an error that
// starts "tether:" once, not "tether: handshake: tether: protocol
// violation".
func TestHandshakeViolationSaysTetherOnce(t *testing.T) {
	leakcheck.Check(t)
	var logs lockedBuffer
	_, addr := startServer(t, newService(), WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	open := func(id uint32) []byte { return yxFrame(yxWindowUpdate, yxSYN, id, 0, nil) }
	_, err = nc.Write(append(open(1), open(3)...))
	require.NoError(t, err)
	line := regexp.MustCompile(`msg="tether: handshake failed".*err="([^"]*)"`)
	var got []string
	require.Eventually(t, func() bool {
		got = line.FindStringSubmatch(logs.String())
		return got != nil
	}, 10*time.Second, time.Millisecond, "the violation is logged")
	assert.Contains(t, got[1], "second stream before the handshake")
	assert.Equal(t, 1, strings.Count(got[1], "tether:"), "a repeated prefix: %s", got[1])
}
