//go:build unix

package broker

// Serve and the errors of the listener it accepts from.

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// emfileChild is the environment variable that makes the test binary run
// TestServeSurvivesAcceptErrors's child.
const emfileChild = "TETHER_TEST_EMFILE_CHILD"

// TestServeSurvivesAcceptErrors makes accept(2) really fail with EMFILE:
// it runs itself again in a child process whose file-descriptor limit is
// lowered until the server can no longer accept, then frees the
// descriptors. The server must log the error, back off, and accept again.
func TestServeSurvivesAcceptErrors(t *testing.T) {
	if os.Getenv(emfileChild) != "" {
		emfileServe(t)
		return
	}
	leakcheck.Check(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeSurvivesAcceptErrors$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), emfileChild+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child process:\n%s", out)
	require.NoError(t, err, "the child failed")
	require.Contains(t, string(out), "--- PASS: TestServeSurvivesAcceptErrors")
}

// emfileServe is the child's side of TestServeSurvivesAcceptErrors.
func emfileServe(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := NewServer(newService(), WithLogger(logger), WithHandshakeTimeout(time.Minute))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		require.ErrorIs(t, <-served, ErrServerClosed)
	}()
	addr := ln.Addr().String()
	add := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := Dial(ctx, "tcp", addr, WithHandshakeTimeout(5*time.Second))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = Call[int](ctx, c.Root(), "Add", 1, 2)
		return err
	}
	require.NoError(t, add())

	// Leave a few descriptors above those open now, and dial until the
	// process has none left (the server holds its side of each connection
	// in a handshake). Then free exactly one, kept for this, and dial
	// once more: that connection waits in the listen backlog, and the
	// server's accept fails for want of a descriptor.
	spare, err := os.Open(os.DevNull)
	require.NoError(t, err)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	var saved syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved))
	lim := saved
	lim.Cur = uint64(len(fds) + 16)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	var conns []net.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var dialErr error
	for i := 0; i < 64; i++ {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			dialErr = err
			break
		}
		conns = append(conns, nc)
	}
	t.Logf("dialed %d connections, then: %v", len(conns), dialErr)
	require.ErrorIs(t, dialErr, syscall.EMFILE, "the process ran out of descriptors")
	spare.Close()
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err, "a connection for the backlog")
	conns = append(conns, nc)
	// The server tries to accept and fails until descriptors are freed.
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "too many open files") }, 10*time.Second, time.Millisecond,
		"the accept error is logged")
	time.Sleep(50 * time.Millisecond) // a few more attempts
	for _, nc := range conns {
		nc.Close()
	}
	conns = nil
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved))

	select {
	case err := <-served:
		t.Fatalf("Serve returned %v", err)
	default:
	}
	require.NoError(t, add(), "the server accepts again")
	t.Logf("server log:\n%s", acceptLines(logs.String(), 5))
}

// acceptLines returns the first n lines of s that mention accept.
func acceptLines(s string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "accept") && len(out) < n {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
