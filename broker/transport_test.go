package broker

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
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

func yamuxHeader(typ byte, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint32(h[8:], length)
	return h
}

func TestCoalescerJoinsHeaderAndBody(t *testing.T) {
	cc := &countingConn{}
	c := newCoalescer(cc)

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
