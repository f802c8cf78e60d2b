package broker

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
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

// TestWireBytes checks every hex example of docs/protocol.md against the
// functions that write it: whole frames (length prefix included) where the
// document shows a frame, the value alone where it shows a value. The
// Apply example of §11.10 is split: its call head is checked here, its
// Batch in internal/feed (TestBatchWireBytes).
func TestWireBytes(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	c := dial(t, addr)
	frame := func(t *testing.T, write func(e *encoder) error) string {
		t.Helper()
		e := getEncoder(c)
		defer putEncoder(e)
		require.NoError(t, write(e))
		return hex.EncodeToString(e.frame())
	}
	value := func(t *testing.T, v any) string {
		t.Helper()
		e := getEncoder(c)
		defer putEncoder(e)
		require.NoError(t, e.any(v))
		return hex.EncodeToString(e.buf[cborx.FramePrefix:])
	}
	protocol, err := os.ReadFile("../docs/protocol.md")
	require.NoError(t, err)
	// annotated is an example the document spreads over annotated lines,
	// as hex; shown is one it shows on a line of its own, which must be
	// there, spelled exactly so.
	annotated := func(s string) string { return strings.ReplaceAll(s, " ", "") }
	shown := func(s string) string {
		assert.Contains(t, string(protocol), "\n"+s+"\n", "docs/protocol.md no longer shows this example")
		return annotated(s)
	}

	t.Run("§5 Hello", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			e.buf = appendHello(e.buf, hello{version: 1, name: "agent", token: "s3cret", maxMessage: 4194304})
			return nil
		})
		assert.Equal(t, annotated("15 85 00 01 65 6167656e74 66 733363726574 1a 00400000"), got)
	})
	t.Run("§6 Call", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			return c.encodeCall(e, callHead{id: 1, target: 0, method: "Lookup", argc: 1}, []any{"users"}, callExt{})
		})
		assert.Equal(t, shown("13 86 03 01 00 66 4c6f6f6b7570 00 81 65 7573657273"), got)
	})
	t.Run("§6 Call with metadata", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			md := Metadata{"tenant": "acme", "request-id": "r-42"}
			return c.encodeCall(e, callHead{id: 1, target: 0, method: "Lookup", argc: 1, ext: true}, []any{"users"}, callExt{md: md})
		})
		assert.Equal(t, shown("32 87 03 01 00 66 4c6f6f6b7570 00 81 65 7573657273 a1 03 a2 6a 726571756573742d6964 64 722d3432 66 74656e616e74 64 61636d65"), got)
		raw, err := hex.DecodeString(got)
		require.NoError(t, err)
		m, err := parseMessage(raw[1:]) // after the one-byte length
		require.NoError(t, err)
		in, err := parseCall(&m)
		require.NoError(t, err)
		assert.Equal(t, Metadata{"tenant": "acme", "request-id": "r-42"}, in.ext.md, "the example reads back as the metadata it was made of")
	})
	// The callee's first export is its object 1, the next its object 2.
	t.Run("§6 Return", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			return c.encodeReturn(e, 1, "M", &outcome{generic: &counter{}})
		})
		assert.Equal(t, shown("07 83 04 01 d9e678 01"), got)
	})
	t.Run("§11.2 Return of a Cacheable", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			return c.encodeReturn(e, 2, "M", &outcome{feed: &counter{}})
		})
		assert.Equal(t, shown("0a 83 04 02 d9e67c d9e678 02"), got)
		got = value(t, &wbModel{feed: &counter{}})
		assert.Equal(t, annotated("d9e67c d9e678 03"), got, "a model, encoded as a value, is the same tag around its feed")
	})
	t.Run("§11.2 a mirror going home", func(t *testing.T) {
		got := value(t, &wbModel{feed: &wbMirrorFeed{home: &Ref{c: c, id: 5}}})
		assert.Equal(t, shown("d9e67c d9e679 05"), got)
	})
	t.Run("§7 Copyable", func(t *testing.T) {
		assert.Equal(t, shown("d9e67a 82 6a746573742e506f696e74 82 01 02"), value(t, point{X: 1, Y: 2}))
	})
	t.Run("§9 Fail", func(t *testing.T) {
		got := frame(t, func(e *encoder) error { return encodeFail(e, 2, errNotFound, "") })
		assert.Equal(t, shown("1f 83 05 02 84 6e746573742e6e6f742d666f756e64 69 6e6f7420666f756e64 f6 f6"), got)
	})
	t.Run("§6 Going away", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			e.buf = appendCall(e.buf, callHead{id: 7, target: 0, method: GoingAwayMethod})
			return nil
		})
		assert.Equal(t, shown("18 86 03 07 00 71 7465746865722e676f696e672d61776179 00 80"), got)
	})
	t.Run("§6 Health's answer", func(t *testing.T) {
		got := frame(t, func(e *encoder) error {
			return c.encodeReturn(e, 3, "M", &outcome{generic: HealthReport{Status: StatusServing, Name: "origin", Uptime: 90 * time.Second, Conns: 2}})
		})
		assert.Equal(t, shown("36 83 04 03 a4 66 737461747573 67 73657276696e67 64 6e616d65 66 6f726967696e 66 757074696d65 1b 00000014f46b0400 65 636f6e6e73 02"), got)
	})
	t.Run("§11.10 Apply's call head", func(t *testing.T) {
		b := appendCall(nil, callHead{id: 1, target: 1, method: "Apply", argc: 1})
		assert.Equal(t, annotated("86 03 01 01 65 4170706c79 00 81"), hex.EncodeToString(b))
	})
}

// wbModel is a Cacheable whose feed is any object.
type wbModel struct{ feed any }

func (m *wbModel) CacheFeed() any { return m.feed }

// wbMirrorFeed is the feed of a mirror whose subscription lives on the
// connection the mirror is sent over.
type wbMirrorFeed struct{ home *Ref }

func (f *wbMirrorFeed) CacheHome(*Conn) *Ref { return f.home }
