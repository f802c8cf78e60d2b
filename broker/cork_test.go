package broker

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	c.uncork(3)
	require.Len(t, cc.writes, 2, "one writev of two buffers")
	want := append(append(dataHeader(3, 4), "head"...), dataHeader(3, len(seg))...)
	assert.Equal(t, want, cc.writes[0], "the piece and the segment's header lead the writev")
	assert.Equal(t, seg, cc.writes[1])
	assert.EqualValues(t, 1, c.writes.Load(), "counted as one write")

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
