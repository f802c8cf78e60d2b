package broker

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// countingConn records each Write.
type countingConn struct {
	net.Conn
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countingConn) RemoteAddr() net.Addr { return nil }

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestCoalescerJoinsHeaderAndBody(t *testing.T) {
	cc := &countingConn{}
	o, err := buildOptions(dialSide, nil)
	require.NoError(t, err)
	c := newCoalescer(cc, o)

	// A data frame: header held back, sent with its body in one write.
	n, err := c.Write(yamuxHeader(0, 5))
	assert.NoError(t, err)
	assert.Equal(t, 12, n)
	assert.Empty(t, cc.writes)
	n, err = c.Write([]byte("hello"))
	assert.NoError(t, err)
	assert.Equal(t, 5, n)
	if assert.Len(t, cc.writes, 1) {
		assert.Len(t, cc.writes[0], 17)
		assert.Equal(t, "hello", string(cc.writes[0][12:]))
	}

	// Frames without a body go straight out.
	c.Write(yamuxHeader(1, 65536)) // window update: the length is a delta
	c.Write(yamuxHeader(2, 7))     // ping
	c.Write(yamuxHeader(0, 0))     // data frame with flags only
	assert.Len(t, cc.writes, 4)
}

// stuckConn is a net.Conn whose Read, once Close was called, waits for
// release before it returns: a yamux receive loop slow to exit, as on a
// machine whose cores are busy.
type stuckConn struct {
	net.Conn
	closed  atomic.Bool
	release chan struct{}
}

func (c *stuckConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.closed.Load() {
		<-c.release
	}
	return n, err
}

func (c *stuckConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// TestCoalescerCloseWakesHandshakeRead: when a session shuts down, a Read
// of the stream a handshake registered with wakeOnClose returns at once,
// without waiting for yamux's receive loop to exit (until then yamux's Read
// would loop without blocking), and the handshake reports the session's
// end, not a timeout.
func TestCoalescerCloseWakesHandshakeRead(t *testing.T) {
	leakcheck.Check(t)
	a, b := net.Pipe()
	sc := &stuckConn{Conn: a, release: make(chan struct{})}
	o, err := buildOptions(dialSide, nil)
	require.NoError(t, err)
	co := newCoalescer(sc, o)
	cli, err := yamux.Client(co, yamuxConfig(o))
	require.NoError(t, err)
	srv, err := yamux.Server(b, yamuxConfig(o))
	require.NoError(t, err)
	st, err := cli.OpenStream()
	require.NoError(t, err)
	assert.Equal(t, yamux.ErrTimeout, closedReadErr(cli, yamux.ErrTimeout), "an open session's timeout stays a timeout")
	st.SetDeadline(time.Now().Add(time.Minute))
	co.wakeOnClose(st)
	read := make(chan error, 1)
	go func() {
		_, err := st.Read(make([]byte, 1))
		read <- err
	}()
	go cli.Close() // waits for the receive loop, stuck in sc.Read until release
	select {
	case err := <-read:
		assert.ErrorIs(t, err, yamux.ErrTimeout)
		assert.Eventually(t, cli.IsClosed, 10*time.Second, time.Millisecond)
		assert.Equal(t, io.EOF, closedReadErr(cli, err))
	case <-time.After(10 * time.Second):
		t.Error("the handshake's read still waits 10 s after its session shut down")
	}
	close(sc.release)
	srv.Close()
}

// guardFor returns a read guard for one side, with default options.
func guardFor(t testing.TB, s side) *readGuard {
	o, err := buildOptions(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &readGuard{}
	g.init(&countingConn{}, o)
	return g
}

// scanSplit feeds b to g in pieces of n bytes, as reads of the
// connection would return it, and returns the first violation.
func scanSplit(g *readGuard, b []byte, n int) error {
	for len(b) > 0 {
		k := min(n, len(b))
		if err := g.scan(b[:k]); err != nil {
			return err
		}
		b = b[k:]
	}
	return nil
}

// TestReadGuardFollowsFramesAcrossReads feeds the same frames in reads of
// every size from one byte: data bodies that contain bytes looking like
// ping headers are skipped as bodies, and the pings are counted wherever
// the reads cut them.
func TestReadGuardFollowsFramesAcrossReads(t *testing.T) {
	// A body made of ping headers: a guard that lost track of the frames
	// would count them.
	fakePings := yxPings(100)
	var in []byte
	in = append(in, yxFrame(yxWindowUpdate, yxSYN, 1, 0, nil)...)
	in = append(in, yxFrame(yxData, 0, 1, uint32(len(fakePings)), fakePings)...)
	in = append(in, yxPings(pingsBeforeHandshake)...)
	in = append(in, yxFrame(yxData, 0, 1, 0, nil)...) // flags only, no body
	in = append(in, yxFrame(yxPing, yxACK, 0, 7, nil)...)
	for n := 1; n <= len(in); n++ {
		g := guardFor(t, serverSide)
		require.NoError(t, scanSplit(g, in, n), "reads of %d bytes", n)
		assert.Equal(t, 0, g.hdrN, "reads of %d bytes: between frames at the end", n)
		assert.Zero(t, g.body)
		// One ping more than the allowance is one too many, however it
		// is cut (the bucket refills far slower than this runs).
		err := scanSplit(g, yxPings(1), n)
		require.ErrorIs(t, err, ErrProtocol, "reads of %d bytes", n)
		assert.ErrorContains(t, err, "pings more often than")
		assert.Equal(t, err, g.err)
	}
}

// TestReadGuardBeforeHandshake checks the bounds that hold until admit: a
// second stream, and more bytes than the largest Hello and some slack, are
// violations; after admit neither is.
func TestReadGuardBeforeHandshake(t *testing.T) {
	open := func(id uint32) []byte { return yxFrame(yxWindowUpdate, yxSYN, id, 0, nil) }

	g := guardFor(t, serverSide)
	require.NoError(t, g.scan(open(1)))
	err := g.scan(open(3))
	require.ErrorIs(t, err, ErrProtocol)
	assert.ErrorContains(t, err, "a second stream before the handshake")

	g = guardFor(t, serverSide)
	hello := make([]byte, handshakeMax+preHandshakeSlack-2*yamuxHeaderSize)
	require.NoError(t, g.scan(append(open(1), yxFrame(yxData, 0, 1, uint32(len(hello)), hello)...)))
	err = g.scan([]byte{0})
	require.ErrorIs(t, err, ErrProtocol)
	assert.ErrorContains(t, err, "bytes before the handshake")

	// Admitted: streams and bytes are the connection's business.
	g = guardFor(t, serverSide)
	require.NoError(t, g.scan(open(1)))
	g.admitted.Store(true)
	for id := uint32(3); id < 100; id += 2 {
		require.NoError(t, g.scan(open(id)))
		require.NoError(t, g.scan(yxFrame(yxData, 0, id, uint32(len(hello)), hello)))
	}

	// A dialer is admitted from the start, with a full bucket of pings.
	g = guardFor(t, dialSide)
	require.NoError(t, g.scan(append(open(2), open(4)...)))
	require.NoError(t, g.scan(yxPings(pingBurst)))
	require.ErrorIs(t, g.scan(yxPings(1)), ErrProtocol)
}

// BenchmarkReadGuard is the guard's cost on the 64 B call path: each read
// holds a data frame of a call or its answer.
func BenchmarkReadGuard(b *testing.B) {
	g := guardFor(b, dialSide)
	body := make([]byte, 90)
	read := yxFrame(yxData, 0, 1, uint32(len(body)), body)
	b.SetBytes(int64(len(read)))
	b.ReportAllocs()
	for b.Loop() {
		if err := g.scan(read); err != nil {
			b.Fatal(err)
		}
	}
}
