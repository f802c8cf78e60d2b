package broker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// The heads of tag 59000 (a sender reference) a peer may write: the
// shortest, and the non-minimal 4- and 8-byte forms, which CBOR allows
// and the receiver reads as the same tag.
var (
	refHead2 = []byte{0xd9, 0xe6, 0x78}
	refHead4 = []byte{0xda, 0x00, 0x00, 0xe6, 0x78}
	refHead8 = []byte{0xdb, 0, 0, 0, 0, 0, 0, 0xe6, 0x78}
)

// senderRef encodes a sender reference to id with the tag head given,
// its id in the shortest form or, with long, as an 8-byte integer.
func senderRef(head []byte, id uint64, long bool) []byte {
	b := append([]byte(nil), head...)
	if long {
		return append(b, 0x1b, 0, 0, 0, 0, 0, 0, 0, byte(id))
	}
	return cborx.AppendUint(b, id)
}

// TestSenderRefsInAnyFormAreReleased: a peer's call carries references to
// its own objects in every head form of tag 59000, alone or deep inside
// maps and arrays, to methods that never take them (unknown, or arguments
// that do not decode). The receiver fails each call with its typed error
// and gives every reference back, exactly as many times as it was sent,
// and serves others throughout.
func TestSenderRefsInAnyFormAreReleased(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	bystander := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	nest := func(item []byte, levels int) []byte {
		var b []byte
		for range levels {
			b = cborx.AppendText(cborx.AppendMap(b, 1), "x")
			b = cborx.AppendArray(b, 2)
			b = cborx.AppendNull(b)
		}
		return append(b, item...)
	}
	cases := []struct {
		name   string
		method string
		args   [][]byte
		want   error
		refs   map[uint64]uint64 // id: the count given back
	}{
		{"4-byte head, unknown method", "Launch", [][]byte{senderRef(refHead4, 101, false)}, ErrUnknownMethod, map[uint64]uint64{101: 1}},
		{"8-byte head and id, nested", "Add", [][]byte{cborx.AppendUint(nil, 1), nest(senderRef(refHead8, 102, true), 6)}, ErrBadArguments, map[uint64]uint64{102: 1}},
		{"one id in two forms", "Add", [][]byte{senderRef(refHead2, 103, false), senderRef(refHead4, 103, true)}, ErrBadArguments, map[uint64]uint64{103: 2}},
		{"wrong count, deep", "Nothing", [][]byte{nest(append(append(cborx.AppendArray(nil, 3), senderRef(refHead4, 104, false)...), append(senderRef(refHead2, 104, false), senderRef(refHead8, 105, false)...)...), 12)}, ErrBadArguments, map[uint64]uint64{104: 2, 105: 1}},
		{"as a map key", "Launch", [][]byte{append(cborx.AppendMap(nil, 1), append(senderRef(refHead4, 106, false), cborx.AppendUint(nil, 0)...)...)}, ErrUnknownMethod, map[uint64]uint64{106: 1}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := rawConnect(t, addr, true)
			id := uint64(i + 1)
			p.sendMsg(func(e *encoder) {
				e.buf = appendCallHead(e.buf, id, 0, tc.method, 0, len(tc.args))
				for _, a := range tc.args {
					e.buf = append(e.buf, a...)
				}
			})
			got := map[uint64]uint64{}
			failed := false
			for !failed || len(got) < len(tc.refs) || !countsReached(got, tc.refs) {
				body, err := p.fr.Next()
				require.NoError(t, err, "released %v of %v", got, tc.refs)
				m, err := parseMessage(body)
				require.NoError(t, err)
				switch m.kind {
				case msgRelease:
					rid, n, err := parseRelease(&m)
					require.NoError(t, err)
					got[rid] += n
				case msgFail:
					callID, err := m.r.ReadUint()
					require.NoError(t, err)
					require.Equal(t, id, callID)
					d := decoder{r: m.r}
					re, err := d.wireError()
					require.NoError(t, err)
					require.ErrorIs(t, re, tc.want)
					failed = true
				default:
					t.Fatalf("unexpected message kind %d", m.kind)
				}
			}
			require.Equal(t, tc.refs, got, "every reference given back exactly as many times as sent")
			// Nothing more is given back: the next message answers the next call.
			p.call(id+100, 0, "Add", 2, 3)
			body, err := p.fr.Next()
			require.NoError(t, err)
			m, err := parseMessage(body)
			require.NoError(t, err)
			require.Equal(t, msgReturn, m.kind)
			var sum int
			require.NoError(t, bystander.Root().Call(ctx, "Add", &sum, 1, 2))
			require.Equal(t, 3, sum)
		})
	}
}

// countsReached reports whether got holds at least the counts of want.
func countsReached(got, want map[uint64]uint64) bool {
	for id, n := range want {
		if got[id] < n {
			return false
		}
	}
	return true
}
