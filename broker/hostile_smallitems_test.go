package broker

// A hostile peer against the validator's first-byte path (cborx.Validate
// reads the integers, booleans, nulls, short ASCII strings and short
// arrays inside a container from their first byte): frames built to sit
// at that path's edges are refused as protocol violations, with the
// general path's words, and a frame of such items within every limit is
// served and decodes whole.

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

func TestHostileSmallItems(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc) // the default limits
	inCall := func(arg []byte) []byte {
		return hpFrame(append(body(func(e *encoder) error {
			e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
			return nil
		}), arg...))
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	ascii := bytes.Repeat([]byte{'a'}, 23)
	// 50,000 arrays of 23 zeros: every array within its limit, 1,200,000
	// items in all.
	wide := cat([]byte{0x19, 0xc3, 0x50}, bytes.Repeat(cat([]byte{0x97}, make([]byte, 23)), 50000))
	wide[0] = 0x99 // an array of 50,000 (0xc350) items
	bombs := []struct {
		name string
		arg  []byte
		want string
	}{
		{"a 23-byte text string whose last byte is 0xff", cat([]byte{0x81, 0x77}, ascii[:22], []byte{0xff}), "not valid UTF-8"},
		{"a 23-byte text string ending in a lone lead byte", cat([]byte{0x82, 0x00, 0x77}, ascii[:22], []byte{0xc3}), "not valid UTF-8"},
		{"an overlong NUL", []byte{0x81, 0x62, 0xc0, 0x80}, "not valid UTF-8"},
		{"small arrays over the total", wide, "items in all"},
		{"40 nested small arrays", cat(bytes.Repeat([]byte{0x81}, 40), []byte{0x00}), "nesting deeper than 32"},
		{"a small array claiming more items than bytes", []byte{0x97, 0x00}, "cannot fit"},
		{"an integer cut short by the frame's end", []byte{0x81, 0x1b, 0, 0, 0}, "unexpected end of data"},
		{"a text string cut short by the frame's end", cat([]byte{0x81, 0x77}, ascii[:22]), "runs past the end"},
		{"a two-byte simple value below 32", []byte{0x81, 0xf8, 0x10}, "invalid two-byte simple value"},
		{"reserved additional information", []byte{0x81, 0x1c}, "reserved additional information"},
		{"an indefinite array inside a small one", []byte{0x81, 0x9f, 0xff}, "indefinite"},
	}
	for i, b := range bombs {
		err := func() error {
			p, err := hpJoin(addr, fmt.Sprintf("small-%d", i))
			if err != nil {
				return err
			}
			defer p.close()
			p.collect(false)
			_ = p.write(inCall(b.arg))
			return p.expectGoodbye(b.want)
		}()
		require.NoError(t, err, b.name)
	}

	// Within every limit: integers of every width, booleans, null, short
	// ASCII strings and small arrays, nested; served and decoded whole.
	good := dial(t, addr)
	arg := []any{int64(0), int64(23), int64(24), int64(1) << 40, int64(-1), int64(-1) << 40, true, false, nil,
		"", string(ascii), []any{[]any{"k", int64(1)}, []any{}}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, good.Root().Call(ctx, "Keep", nil, arg))
	var kept any
	require.NoError(t, good.Root().Call(ctx, "Kept", &kept))
	require.Equal(t, arg, kept)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
}
