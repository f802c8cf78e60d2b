package broker

import (
	"bytes"
	"context"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// returnFrame is the frame of a Return of call id whose result is b.
func returnFrame(id uint64, b []byte) []byte {
	return hpFrame(cborx.AppendBytes(appendReturnHead(nil, id), b))
}

// fillWatcher is a reader that notes whether it was ever asked to fill
// bytes inside dst.
type fillWatcher struct {
	r      *bytes.Reader
	dst    []byte
	filled bool
}

func (w *fillWatcher) Read(p []byte) (int, error) {
	if len(p) > 0 {
		lo, hi := uintptr(unsafe.Pointer(unsafe.SliceData(w.dst))), uintptr(unsafe.Pointer(unsafe.SliceData(w.dst)))+uintptr(cap(w.dst))
		if at := uintptr(unsafe.Pointer(&p[0])); at >= lo && at < hi {
			w.filled = true
		}
	}
	return w.r.Read(p)
}

// TestReturnDirectFillsReply reads a Return whose result is a 64 KiB byte
// string for a caller whose reply has room: the stream's bytes go straight
// into the reply, with no frame buffer between. A reply without room, or
// a frame that is not such a Return, is left whole to the usual path.
func TestReturnDirectFillsReply(t *testing.T) {
	want := pattern(64<<10, 7)
	c := &Conn{}
	c.pending.calls = map[uint64]*call{}
	reply := make([]byte, 0, 80<<10)
	cl := newCall(context.Background(), "Big", &reply)
	id, ok := c.pending.add(cl)
	require.True(t, ok)
	w := &fillWatcher{r: bytes.NewReader(returnFrame(id, want)), dst: reply}
	fr := newMsgReader(w, DefaultMaxMessageSize)
	n, err := fr.frameLen()
	require.NoError(t, err)
	done, err := c.returnDirect(fr, nil, n)
	require.NoError(t, err)
	require.True(t, done, "a Return of bytes into a reply with room is read directly")
	<-cl.done
	require.NoError(t, cl.err)
	assert.True(t, w.filled, "the stream was read into the reply")
	assert.True(t, bytes.Equal(want, reply), "the reply holds the result")
	assert.Equal(t, unsafe.SliceData(w.dst), unsafe.SliceData(reply), "the reply kept its array")
	assert.Empty(t, c.pending.calls)

	for name, tc := range map[string]struct {
		reply []byte
		frame func(id uint64) []byte
	}{
		"no room":   {nil, func(id uint64) []byte { return returnFrame(id, want) }},
		"not bytes": {make([]byte, 0, 80<<10), func(id uint64) []byte { return hpFrame(cborx.AppendText(appendReturnHead(nil, id), string(want))) }},
		"a call":    {make([]byte, 0, 80<<10), func(id uint64) []byte { return hpFrame(cborx.AppendBytes(hpCall(id, 0, "X"), want)) }},
	} {
		reply := tc.reply
		cl := newCall(context.Background(), "Big", &reply)
		id, _ := c.pending.add(cl)
		frame := tc.frame(id)
		fr := newMsgReader(bytes.NewReader(frame), DefaultMaxMessageSize)
		n, err := fr.frameLen()
		require.NoError(t, err, name)
		done, err := c.returnDirect(fr, nil, n)
		require.NoError(t, err, name)
		require.False(t, done, name)
		body, err := fr.body(n)
		require.NoError(t, err, name)
		assert.Equal(t, frame[len(frame)-n:], body, "%s: the frame is read whole by the usual path", name)
		require.Same(t, cl, c.pending.take(id), "%s: the call still waits", name)
	}
}

// TestReturnDirectCallerGivesUp has a peer answer the server's call with
// half of a 64 KiB Return on a message stream and stall: the caller, whose
// reply has room, gives up at its deadline, not when the frame ends. The
// rest of the frame, sent later, is dropped without touching the reply,
// and the connection goes on: the next result arrives whole.
func TestReturnDirectCallerGivesUp(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	p := hpJoinT(t, addr, "stall")
	victim, err := hpServerConn(srv, "stall")
	require.NoError(t, err)

	reply := make([]byte, 0, 64<<10+64)
	errc := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	go func() { errc <- victim.Root().Call(ctx, "Big", &reply) }()

	id := readCallID(t, p)
	st, err := p.sess.OpenStream()
	require.NoError(t, err)
	first := returnFrame(id, pattern(64<<10, 1))
	require.NoError(t, hpWriteOn(st, first[:len(first)/2]))

	start := time.Now()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(hpSlack):
		t.Fatal("the caller did not give up while its result stalled")
	}
	assert.Less(t, time.Since(start), 2*time.Second)
	seen := append([]byte(nil), reply[:cap(reply)]...)

	require.NoError(t, hpWriteOn(st, first[len(first)/2:]))
	want := pattern(64<<10, 2)
	var next []byte
	errc2 := make(chan error, 1)
	go func() { errc2 <- victim.Root().Call(testkit.Ctx(t, hpSlack), "Big", &next) }()
	require.NoError(t, hpWriteOn(st, returnFrame(readCallID(t, p), want)))
	require.NoError(t, <-errc2)
	assert.True(t, bytes.Equal(want, next), "the next result arrived whole")
	assert.Equal(t, seen, reply[:cap(reply)], "the reply was not written to after its caller gave up")
	assert.NoError(t, victim.Err())
}

// readCallID reads the next Call the peer p receives on its main stream
// and returns its call id.
func readCallID(t *testing.T, p *hpPeer) uint64 {
	t.Helper()
	p.main.SetReadDeadline(time.Now().Add(hpSlack))
	for {
		body, err := p.fr.Next()
		require.NoError(t, err)
		r := cborx.NewReader(body)
		_, err = r.ReadArray()
		require.NoError(t, err)
		if kind, _ := r.ReadUint(); msgKind(kind) != msgCall {
			continue
		}
		id, err := r.ReadUint()
		require.NoError(t, err)
		return id
	}
}

// FuzzBytesReturn feeds bytesReturn the head of any frame: it never
// panics, and what it accepts is a Return whose byte string ends the
// frame exactly where the frame's length says.
func FuzzBytesReturn(f *testing.F) {
	body := cborx.AppendBytes(appendReturnHead(nil, 7), pattern(5000, 1))
	f.Add(body[:returnHeadMax], len(body))
	f.Add(hpCall(1, 0, "Echo", pattern(5000, 2))[:returnHeadMax], 5000+20)
	f.Add([]byte{0x83, 0x04, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x5b, 0, 0, 0, 0, 0, 0, 0x20, 0}, 1<<13)
	f.Fuzz(func(t *testing.T, head []byte, n int) {
		if n < aliasMin || n > DefaultMaxMessageSize || len(head) > n {
			return
		}
		id, skip, ok := bytesReturn(head, n)
		if !ok {
			return
		}
		r := cborx.NewReader(head)
		k, err := r.ReadArray()
		require.NoError(t, err)
		require.Equal(t, 3, k)
		kind, _ := r.ReadUint()
		require.Equal(t, uint64(msgReturn), kind)
		got, _ := r.ReadUint()
		require.Equal(t, id, got)
		h, err := r.ReadHead()
		require.NoError(t, err)
		require.Equal(t, skip, r.Offset())
		require.LessOrEqual(t, skip, len(head))
		require.Equal(t, uint64(n-skip), h.Arg)
	})
}
