package broker

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// dataHeader is a yamux data frame's header on stream id with a body of n
// bytes.
func dataHeader(id uint32, n int) []byte {
	h := yamuxHeader(yamuxTypeData, uint32(n))
	binary.BigEndian.PutUint32(h[4:8], id)
	return h
}

// TestCoalescerCorksPieceWithSegment corks stream 3: its next small frame
// waits and leaves in the same write as the frame after it (the segment);
// uncorked, or on another stream, a small frame goes out at once; one
// stream at a time may cork.
func TestCoalescerCorksPieceWithSegment(t *testing.T) {
	cc := &countingConn{}
	o, err := buildOptions(dialSide, nil)
	require.NoError(t, err)
	c := newCoalescer(cc, o)
	assert.False(t, c.cork(3), "a connection that cannot writev never corks")
	c.tcp = true // as on TCP; net.Buffers then writes each buffer to cc in turn

	require.True(t, c.cork(3))
	assert.False(t, c.cork(5), "one stream at a time")
	c.Write(dataHeader(3, 4))
	c.Write([]byte("head"))
	assert.Empty(t, cc.writes, "the piece waits for its segment")
	seg := bytes.Repeat([]byte{7}, writevThreshold+1)
	c.Write(dataHeader(3, len(seg)))
	c.Write(seg)
	require.Len(t, cc.writes, 2, "one writev of two buffers")
	want := append(append(dataHeader(3, 4), "head"...), dataHeader(3, len(seg))...)
	assert.Equal(t, want, cc.writes[0], "the piece and the segment's header lead the writev")
	assert.Equal(t, seg, cc.writes[1])
	assert.EqualValues(t, 1, c.writes.Load(), "counted as one write")
	c.Write(dataHeader(3, 100))
	c.Write(make([]byte, 100))
	require.Len(t, cc.writes, 3, "the segment's small last frame goes at once: the piece took the cork")
	cc.writes = cc.writes[:2]
	c.uncork(3)

	c.Write(dataHeader(3, 4))
	c.Write([]byte("tail"))
	assert.Len(t, cc.writes, 3, "uncorked, a small frame goes at once")

	require.True(t, c.cork(3))
	c.Write(dataHeader(5, 1))
	c.Write([]byte("x"))
	assert.Len(t, cc.writes, 4, "another stream's frame is not held")
	c.Write(dataHeader(3, 4))
	c.Write([]byte("head"))
	c.Write(yamuxHeader(yamuxTypeWindowUpdate, 1<<16))
	assert.Len(t, cc.writes, 5, "a frame without a body sends the corked one with it")
	assert.Len(t, cc.writes[4], 12+4+12)
	c.uncork(3)
}

// TestCorkedEchoesNeverStall echoes values from just over the message
// stream threshold to 1 MiB, one caller reusing its reply as the bench
// does: a cork holds only the piece before a segment, never the segment's
// last small yamux frame (which nothing would send after it, with no other
// traffic on the connection).
func TestCorkedEchoesNeverStall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &largeService{})
	cl := dial(t, addr)
	root := cl.Root()
	var out []byte
	for _, n := range []int{defaultMsgStreamThreshold + 1, 64 << 10, wholeFrameLimit + 1, 1 << 20, 1<<20 + 4000} {
		want := pattern(n, n)
		for i := range 20 {
			ctx := testkit.Ctx(t, 10*time.Second)
			require.NoError(t, root.Call(ctx, "Echo", &out, want), "echo %d of %d bytes", i, n)
			require.True(t, bytes.Equal(want, out), "echo %d of %d bytes", i, n)
		}
	}
}
