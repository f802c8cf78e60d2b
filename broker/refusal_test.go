package broker

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// warnLog returns a logger at warn level and what it wrote.
func warnLog() (*slog.Logger, *lockedBuffer) {
	var b lockedBuffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelWarn})), &b
}

// waitLogged waits (bounded) until logs holds n lines containing want:
// the server logs a refusal on its handshake goroutine, after the dialer
// already has its answer.
func waitLogged(t *testing.T, logs *lockedBuffer, want string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(logs.String(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("want %d log lines with %q; the log:\n%s", n, want, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefusedTokenReadsOnce: a wrong token fails the dial with an error
// that matches ErrAuthFailed (and is no *RemoteError), reads
// "tether:" once, and says what to check; the server logs the refusal at
// warn level.
func TestRefusedTokenReadsOnce(t *testing.T) {
	leakcheck.Check(t)
	logger, logs := warnLog()
	_, addr := startServer(t, newService(), WithToken("right"), WithLogger(logger))
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithToken("wrong"))
	require.ErrorIs(t, err, ErrAuthFailed)
	var re *RemoteError
	assert.False(t, errors.As(err, &re), "a refused handshake is not an error a call returned")
	msg := err.Error()
	assert.True(t, strings.HasPrefix(msg, "tether: authentication failed: "), msg)
	assert.Equal(t, 1, strings.Count(msg, "tether:"), "no repeated prefix: %s", msg)
	assert.Contains(t, msg, "WithToken")
	waitLogged(t, logs, "tether: handshake refused", 1)
	assert.Contains(t, logs.String(), "level=WARN")

	// For a peer of this process (a relay passing it on), the address goes.
	red, _ := hop.Redact(err, hop.Self{Name: "edge", Role: "relay"})
	assert.Equal(t, `tether: authentication failed: relay "edge" was refused by its server: its credentials were not accepted`, red)
}

// fakeServer answers one dialer's Hello with a Welcome of another
// protocol version, as a newer server would.
func fakeServer(t *testing.T, version uint64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		cfg := yamux.DefaultConfig()
		cfg.LogOutput, cfg.Logger = nil, yamuxLogger{discardLogger()}
		sess, err := yamux.Server(nc, cfg)
		if err != nil {
			return
		}
		defer sess.Close()
		st, err := sess.Accept()
		if err != nil {
			return
		}
		if _, err := cborx.NewFrameReader(st, handshakeMax, 1024).Next(); err != nil {
			return
		}
		st.Write(hpFrame(body(func(e *encoder) error {
			e.buf = appendWelcome(e.buf, welcome{version: version, name: "future", id: "conn-1", maxMessage: 1 << 20})
			return nil
		})))
		st.Read(make([]byte, 1)) // until the dialer hangs up
	}()
	return ln.Addr().String()
}

// TestVersionMismatchBothWays: a dialer that meets a server of another
// version, and a server that meets a dialer of another version, both
// report ErrVersionMismatch; the server logs it.
func TestVersionMismatchBothWays(t *testing.T) {
	leakcheck.Check(t)
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", fakeServer(t, protocolVersion+1))
	require.ErrorIs(t, err, ErrVersionMismatch)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	assert.Contains(t, err.Error(), "upgrade the older side")

	logger, logs := warnLog()
	_, addr := startServer(t, newService(), WithLogger(logger))
	p, err := hpConnect(addr)
	require.NoError(t, err)
	defer p.close()
	require.NoError(t, p.openMain())
	// The server refuses and closes at once: yamux may then report the
	// Hello's write as failed though it went out (as Dial knows), so the
	// answer is read even then.
	werr := p.send(body(func(e *encoder) error {
		e.buf = appendHello(e.buf, hello{version: protocolVersion + 1, name: "future", token: "", maxMessage: 1 << 20})
		return nil
	}))
	b, err := p.fr.Next()
	require.NoError(t, err, "the answer to the Hello (its write said %v)", werr)
	_, err = parseWelcome(b)
	assert.ErrorIs(t, err, ErrVersionMismatch, "the server answers with a refusal")
	waitLogged(t, logs, "tether: handshake refused", 1)
	assert.Contains(t, logs.String(), "version mismatch")
}

// TestTLSRefusalsMatchErrAuthFailed: a TLS handshake that fails on a
// certificate is a refusal, on both sides: the dialer does not trust the
// server's certificate, or the server wants a client certificate the
// dialer does not have. The dialer's error matches ErrAuthFailed and
// keeps the TLS error; the server logs each refusal.
func TestTLSRefusalsMatchErrAuthFailed(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, cliCfg := tlsConfigs(t)
	logger, logs := warnLog()
	_, addr := startServer(t, newService(), WithTLS(srvCfg), WithLogger(logger))

	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithTLS(&tls.Config{Certificates: cliCfg.Certificates}))
	require.ErrorIs(t, err, ErrAuthFailed, "the server's certificate is not trusted")
	var ce *tls.CertificateVerificationError
	assert.True(t, errors.As(err, &ce), "the TLS error is kept: %v", err)
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	assert.Contains(t, err.Error(), "RootCAs")

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithTLS(&tls.Config{RootCAs: cliCfg.RootCAs, MaxVersion: version}))
		require.ErrorIs(t, err, ErrAuthFailed, "no client certificate, TLS %x", version)
		assert.Contains(t, err.Error(), "Certificates", err.Error())
	}
	waitLogged(t, logs, "tether: handshake refused", 3)
	assert.NotContains(t, logs.String(), "level=DEBUG")

}

// TestTLSRefusalKeepsReading: a server that refused a TLS 1.3 dialer's
// certificate keeps reading what the dialer sends after its side of the
// handshake (its Hello) until the dialer reads the alert. Had the server
// closed at once, those bytes would reach a closed socket: a reset, and the
// dialer's next write would fail with it instead of the refusal showing.
func TestTLSRefusalKeepsReading(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, cliCfg := tlsConfigs(t)
	_, addr := startServer(t, newService(), WithTLS(srvCfg), WithLogger(slog.New(slog.DiscardHandler)))

	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	tc := tls.Client(nc, &tls.Config{RootCAs: cliCfg.RootCAs, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13})
	require.NoError(t, tc.HandshakeContext(testkit.Ctx(t, 30*time.Second)), "a TLS 1.3 dialer finishes before the server checks it")
	time.Sleep(200 * time.Millisecond) // the server has refused it by now
	for i := range 3 {
		_, err = tc.Write(make([]byte, 1024))
		require.NoError(t, err, "write %d after the refusal", i)
		time.Sleep(20 * time.Millisecond)
	}
	_, err = tc.Read(make([]byte, 1))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate required", "the dialer reads the server's alert")
}
