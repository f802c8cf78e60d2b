package broker

// Hostile peers sending messages built to cost the most: frames at the
// size limit, and CBOR bodies deep, huge or wide. The harness, and what
// every hostile-peer test checks, are in hostile_peers_test.go.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestHostileFramesAtTheSizeLimit floods the server with frames of exactly
// its maximum message size, each a valid call of Echo, on the main stream
// and on a message stream: all are served (the limit is inclusive). One
// byte more, on either kind of stream, is a protocol violation: the server
// checks the declared length before reading the body, says goodbye and
// hangs up.
func TestHostileFramesAtTheSizeLimit(t *testing.T) {
	leakcheck.Check(t)
	const limit = 64 << 10
	_, addr := startServer(t, newService(), WithMaxMessageSize(limit))
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	const workers = 2
	peers := make([]*hpPeer, workers)
	bulk := make([]*yamux.Stream, workers) // each peer's own message stream
	ids := make([]uint64, workers)
	for w := range peers {
		p := hpJoinT(t, addr, fmt.Sprintf("at-limit-%d", w))
		p.collect(true) // the echoes exceed 32 KiB: they come on the server's message streams
		st, err := p.sess.OpenStream()
		require.NoError(t, err)
		peers[w], bulk[w] = p, st
	}

	res := hpUnderAttack(good, workers, func(w, _ int) error {
		p := peers[w]
		want := map[uint64]int{} // call id -> the echo's length
		for i := 0; i < 4; i++ {
			ids[w]++
			b, n := hpEchoCall(ids[w], limit)
			var err error
			if i%2 == 0 {
				err = p.send(b)
			} else {
				err = hpWriteOn(bulk[w], hpFrame(b))
			}
			if err != nil {
				return err
			}
			want[ids[w]] = n
		}
		for len(want) > 0 {
			m, err := p.next(hpSlack)
			if err != nil {
				return err
			}
			n, ok := want[m.id]
			if m.typ != uint64(msgReturn) || !ok || m.size != n {
				return fmt.Errorf("want the echo of a call at the limit, got %v (size %d)", m, m.size)
			}
			delete(want, m.id)
		}
		return nil
	})
	res.check(t, "frames at the size limit", before)

	over, _ := hpEchoCall(ids[0]+1, limit+1)
	require.Len(t, over, limit+1)
	_ = peers[0].send(over)
	require.NoError(t, peers[0].expectGoodbye("exceeds the maximum size"), "one byte over the limit, on the main stream")
	_ = hpWriteOn(bulk[1], hpFrame(over))
	require.NoError(t, peers[1].expectGoodbye("exceeds the maximum size"), "one byte over the limit, on a message stream")

	n, err := Call[int](testkit.Ctx(t, 30*time.Second), good.Root(), "Add", 40, 2)
	require.NoError(t, err)
	assert.Equal(t, 42, n)
}

// TestHostileDeepAndHugeCBOR sends bodies built to exhaust the decoder:
// nesting 10000 levels deep (arrays, maps, tags), containers claiming 2^32
// or 2^64 items, strings claiming 1 GiB or 2^63 bytes with a few bytes
// following, frame lengths claiming 2^63 bytes or overflowing 64 bits, and
// a Hello nested 10000 deep. Each is a protocol violation, found from the
// heads alone: the server says goodbye (or rejects the Hello) and hangs up,
// and allocates next to nothing.
func TestHostileDeepAndHugeCBOR(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService()) // the default 4 MiB limit
	good := dial(t, addr)
	before := hpMedianAdd(t, good)

	nest := func(level []byte, depth int, leaf ...byte) []byte {
		var b []byte
		for i := 0; i < depth; i++ {
			b = append(b, level...)
		}
		return append(b, leaf...)
	}
	// inCall makes arg the only argument of a call of Keep (which takes
	// any, so that only the limits stand in the way).
	inCall := func(arg []byte) []byte {
		return hpFrame(append(body(func(e *encoder) error {
			e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
			return nil
		}), arg...))
	}
	oneGiB := []byte{0x40, 0, 0, 0}
	bombs := []struct {
		name  string
		frame []byte // sent after the handshake
		want  string // in the Goodbye
	}{
		{"10000 nested arrays", inCall(nest([]byte{0x81}, 10000, 0xf6)), "nesting deeper than 32"},
		{"10000 nested maps", inCall(nest([]byte{0xa1, 0x00}, 10000, 0xf6)), "nesting deeper than 32"},
		{"10000 nested tags", inCall(nest([]byte{0xc6}, 10000, 0xf6)), "nesting deeper than 32"},
		{"an array claiming 2^32 items", inCall([]byte{0x9b, 0, 0, 0, 1, 0, 0, 0, 0, 0xf6}), "exceeds 131072"},
		{"a map claiming 2^32 pairs", inCall([]byte{0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0xf6, 0xf6}), "exceeds 131072"},
		{"an array claiming 2^64-1 items", inCall([]byte{0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf6}), "exceeds 131072"},
		{"an array claiming 100000 items in 3 bytes", inCall([]byte{0x9a, 0, 0x01, 0x86, 0xa0, 0xf6, 0xf6, 0xf6}), "cannot fit"},
		{"a byte string claiming 1 GiB", inCall(append(append([]byte{0x5a}, oneGiB...), "only a few bytes"...)), "runs past the end"},
		{"a text string claiming 1 GiB", inCall(append(append([]byte{0x7a}, oneGiB...), "abc"...)), "runs past the end"},
		{"a byte string claiming 2^63 bytes", inCall([]byte{0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}), "runs past the end"},
		{"a frame claiming 2^63 bytes", append(binary.AppendUvarint(nil, 1<<63), 0x86, 0x03), "exceeds the maximum size"},
		{"a frame length over 64 bits", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00}, "overflows 64 bits"},
	}
	play := func(i int, name string) error {
		b := bombs[i]
		p, err := hpJoin(addr, name)
		if err != nil {
			return err
		}
		defer p.close()
		p.collect(false)
		_ = p.write(b.frame)
		if err := p.expectGoodbye(b.want); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
		return nil
	}
	// hello sends a Hello nested 10000 deep: the server rejects it.
	hello := func() error {
		p, err := hpConnect(addr)
		if err != nil {
			return err
		}
		defer p.close()
		if err := p.openMain(); err != nil {
			return err
		}
		_ = p.send(nest([]byte{0x81}, 10000, 0x00))
		p.collect(false)
		m, err := p.next(hpSlack)
		if err != nil {
			return fmt.Errorf("a deeply nested Hello: %w", err)
		}
		if m.typ != uint64(msgReject) || !errors.Is(m.err, ErrProtocol) {
			return fmt.Errorf("a deeply nested Hello: want a Reject for a protocol violation, got %v", m)
		}
		return p.hungUp(hpSlack)
	}

	// Each bomb once, on its own, to measure what it costs the process:
	// the hostile peer's few allocations included, the total must be far
	// below what the heads claim.
	var total uint64
	for i, b := range bombs {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		start := ms.TotalAlloc
		require.NoError(t, play(i, "bomb"))
		runtime.ReadMemStats(&ms)
		total += ms.TotalAlloc - start
		t.Logf("%s: %d KiB allocated", b.name, (ms.TotalAlloc-start)>>10)
	}
	require.NoError(t, hello())
	t.Logf("all bombs: %d KiB allocated", total>>10)
	assert.Less(t, total, uint64(64<<20), "the bombs' claimed sizes were allocated")

	// Then all of them, over and over, while the well-behaved client is
	// measured.
	res := hpUnderAttack(good, 4, func(w, r int) error {
		if i := (w + r) % (len(bombs) + 1); i < len(bombs) {
			return play(i, fmt.Sprintf("bomb-%d-%d", w, r))
		}
		return hello()
	})
	res.check(t, "deep and huge CBOR", before)
	require.Eventually(t, func() bool { return len(srv.Conns()) == 1 }, hpSlack, time.Millisecond)
	assert.NoError(t, good.Err())
}

// TestHostileWideCBOR measures the other side of the CBOR limits: bodies
// made of the cheapest items there are, empty arrays, each of which becomes
// a Go value when decoded into an any. One that keeps every limit (131072
// items per container, 1048576 in all) is served, and the test reports how
// much the server allocated per byte received; one over the limit in all,
// though every container keeps its own, is a protocol violation.
func TestHostileWideCBOR(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	wide := func(outer int) []byte {
		// [3, 1, 0, "IsMine", 0, [outer arrays of 131072 empty arrays]]
		const inner = 128 * 1024
		call := body(func(e *encoder) error {
			e.buf = appendCallHead(e.buf, 1, 0, "IsMine", 0, 1)
			e.buf = cborx.AppendArray(e.buf, outer)
			for i := 0; i < outer; i++ {
				e.buf = cborx.AppendArray(e.buf, inner)
				for j := 0; j < inner; j++ {
					e.buf = cborx.AppendArray(e.buf, 0)
				}
			}
			return nil
		})
		require.LessOrEqual(t, len(call), DefaultMaxMessageSize)
		return hpFrame(call)
	}

	p := hpJoinT(t, addr, "wide")
	p.collect(false)
	frame := wide(7) // 7 + 7×131072 = 917511 items in all
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	start := ms.TotalAlloc
	require.NoError(t, p.write(frame))
	m, err := p.next(6 * hpSlack)
	require.NoError(t, err)
	require.Equal(t, uint64(msgReturn), m.typ, "the body keeps every limit: the call is served (%v)", m)
	runtime.ReadMemStats(&ms)
	alloc := ms.TotalAlloc - start
	t.Logf("a %d KiB body of %d empty arrays made the process allocate %d MiB (%.0f bytes per byte received)",
		len(frame)>>10, 7*128*1024, alloc>>20, float64(alloc)/float64(len(frame)))

	q := hpJoinT(t, addr, "wider")
	q.collect(false)
	require.NoError(t, q.write(wide(8))) // 1048584 items in all
	m, err = q.next(6 * hpSlack)
	require.NoError(t, err)
	require.Equal(t, uint64(msgGoodbye), m.typ, "over the limit in all (%v)", m)
	assert.ErrorContains(t, m.err, "items in all")
}
