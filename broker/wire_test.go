package broker

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

func TestMsgKindString(t *testing.T) {
	assert.Equal(t, "Hello", msgHello.String())
	assert.Equal(t, "Call", msgCall.String())
	assert.Equal(t, "Goodbye", msgGoodbye.String())
	assert.Equal(t, "msgKind(99)", msgKind(99).String())
}

// TestWireRoundTrip reads back, with each message's parse function, what
// its append function wrote.
func TestWireRoundTrip(t *testing.T) {
	parsed := func(t *testing.T, b []byte, want msgKind) message {
		m, err := parseMessage(b)
		require.NoError(t, err)
		require.Equal(t, want, m.kind)
		return m
	}
	t.Run("hello", func(t *testing.T) {
		h := hello{version: 1, name: "agent", token: "s3cret", maxMessage: 4 << 20}
		got, err := parseHello(appendHello(nil, h))
		require.NoError(t, err)
		assert.Equal(t, h, got)
	})
	t.Run("welcome", func(t *testing.T) {
		w := welcome{version: 1, name: "server", id: "c0ffee", maxMessage: 1 << 20}
		got, err := parseWelcome(appendWelcome(nil, w))
		require.NoError(t, err)
		assert.Equal(t, w, got)
	})
	t.Run("call", func(t *testing.T) {
		b := appendCall(nil, callHead{id: 7, target: 2, method: "Get", timeout: 5, argc: 1, ext: true})
		b = cborx.AppendText(b, "alice")
		b = appendCallExt(b, callExt{waitLink: true})
		m := parsed(t, b, msgCall)
		in, err := parseCall(&m)
		require.NoError(t, err)
		assert.Equal(t, uint64(7), in.id)
		assert.Equal(t, uint64(2), in.target)
		assert.Equal(t, "Get", string(in.method))
		assert.Equal(t, uint64(5), in.timeout)
		assert.Equal(t, 1, in.argc)
		assert.True(t, in.ext.waitLink)
	})
	t.Run("return", func(t *testing.T) {
		m := parsed(t, cborx.AppendNull(appendReturnHead(nil, 9)), msgReturn)
		id, err := parseResult(&m)
		require.NoError(t, err)
		assert.Equal(t, uint64(9), id)
	})
	t.Run("cancel", func(t *testing.T) {
		m := parsed(t, appendCancel(nil, 3, true), msgCancel)
		id, mayPrecede, err := parseCancel(&m)
		require.NoError(t, err)
		assert.Equal(t, uint64(3), id)
		assert.True(t, mayPrecede)
	})
	t.Run("release", func(t *testing.T) {
		m := parsed(t, appendRelease(nil, 4, 2), msgRelease)
		id, n, err := parseRelease(&m)
		require.NoError(t, err)
		assert.Equal(t, [2]uint64{4, 2}, [2]uint64{id, n})
	})
}

// TestWireBytes pins the example bodies of docs/protocol.md.
func TestWireBytes(t *testing.T) {
	b := appendHello(nil, hello{version: 1, name: "agent", token: "s3cret", maxMessage: 4194304})
	assert.Equal(t, "85"+"00"+"01"+"656167656e74"+"66733363726574"+"1a00400000", hex.EncodeToString(b))
	b = cborx.AppendUint(cborx.AppendTag(appendReturnHead(nil, 1), tagSenderRef), 1)
	assert.Equal(t, "830401d9e67801", hex.EncodeToString(b))
}
