package feed

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// batchTaker takes batches as arguments, alone, followed by an integer,
// or in an array, as the broker decodes them through the batch's
// validatedDecoder seam (Batch.DecodeValidated from the rest of the
// message).
type batchTaker struct{}

func (batchTaker) Apply(_ context.Context, b Batch) (uint64, error) { return b.Version, nil }
func (batchTaker) Pair(b Batch, n int) (string, error) {
	return fmt.Sprintf("%s/%d/%d/%d", b.Epoch, b.Version, len(b.Steps), n), nil
}
func (batchTaker) Many(bs []Batch, n int) (string, error) {
	s := ""
	for _, b := range bs {
		s += fmt.Sprintf("%d,", b.Version)
	}
	return fmt.Sprint(s, n), nil
}

// TestBatchSelfDecodingOverTCP: batches a peer sends as arguments, over
// real TCP, decode from the rest of the message and leave the decoder
// exactly after them: an integer or another batch after a batch, fresh or
// remembered (recentBatches), reads right. A batch with a field too many
// or too few, a change with an item too many, a batch where an integer
// belongs or the other way round, an argument too many: each call fails
// with a typed error and the connection, and a bystander's, keep serving.
func TestBatchSelfDecodingOverTCP(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := broker.NewServer(batchTaker{})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-errc })
	ctx := testkit.Ctx(t, 30*time.Second)
	dialRoot := func() *broker.Ref {
		conn, err := broker.Dial(ctx, "tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() })
		return conn.Root()
	}
	peer, bystander := dialRoot(), dialRoot()

	mk := func(epoch string, version uint64, steps int) []byte {
		ss := make([]Step, steps)
		for i := range ss {
			ss[i] = Step{From: version - uint64(steps-i), Version: version - uint64(steps-i) + 1,
				Changes: []Change{{Key: enc(fmt.Sprint("k", i)), Value: enc(i)}}}
		}
		return appendBatch(nil, &Batch{Epoch: epoch, Version: version, Steps: ss})
	}
	good := mk("self-decode", 500, 40) // large enough to be remembered (minShared)
	require.GreaterOrEqual(t, len(good), minShared)
	small := mk("small", 3, 1)

	var out string
	for n := range 3 { // fresh, then remembered
		require.NoError(t, peer.Call(ctx, "Pair", &out, encodedBatch(good), n))
		require.Equal(t, fmt.Sprint("self-decode/500/40/", n), out)
		require.NoError(t, peer.Call(ctx, "Pair", &out, encodedBatch(small), n))
		require.Equal(t, fmt.Sprint("small/3/1/", n), out)
	}
	many := append(cborx.AppendArray(nil, 3), slices.Concat(good, small, good)...)
	require.NoError(t, peer.Call(ctx, "Many", &out, encodedBatch(many), 9))
	require.Equal(t, "500,3,500,9", out)

	// A field too many: the batch's array holds ten items, the last null.
	tooMany := append(slices.Clone(good), 0xf6)
	require.Equal(t, byte(0x89), tooMany[0])
	tooMany[0] = 0x8a
	// A field too few: the token ("", the last byte) left out.
	tooFew := slices.Clone(good[:len(good)-1])
	tooFew[0] = 0x88
	// A change of four items.
	var changeExtra []byte
	{
		b := Batch{Epoch: "x", Version: 2, Steps: []Step{{From: 1, Version: 2, Changes: []Change{{Key: enc("k"), Value: enc(1)}}}}}
		raw := appendBatch(nil, &b)
		at := slices.Index(raw, 0x83) // the step's head; its change's follows the changes' array head
		require.Positive(t, at)
		i := slices.Index(raw[at+1:], 0x83) + at + 1
		changeExtra = slices.Concat(raw[:i], []byte{0x84}, raw[i+1:len(raw)-1-1-1], []byte{0xf6}, raw[len(raw)-3:])
		var check Batch
		_, err := check.DecodeValidated(cborx.Trusted{}, changeExtra)
		require.ErrorIs(t, err, ErrBadBatch)
		require.NoError(t, cborx.Validate(changeExtra, cborx.DefaultLimits), "well-formed: only the batch's decoding refuses it")
	}

	bad := []struct {
		name   string
		method string
		args   []any
	}{
		{"a field too many", "Pair", []any{encodedBatch(tooMany), 1}},
		{"a field too few", "Pair", []any{encodedBatch(tooFew), 1}},
		{"a change of four items", "Apply", []any{encodedBatch(changeExtra)}},
		{"an integer where a batch belongs", "Pair", []any{7, 1}},
		{"a batch where an integer belongs", "Pair", []any{encodedBatch(good), encodedBatch(small)}},
		{"an argument too many", "Apply", []any{encodedBatch(good), 1}},
		{"too few arguments", "Pair", []any{encodedBatch(good)}},
		{"a bad batch amid good ones", "Many", []any{encodedBatch(append(cborx.AppendArray(nil, 3), slices.Concat(good, tooMany, small)...)), 1}},
		{"remembered batch, then a field too many", "Many", []any{encodedBatch(append(cborx.AppendArray(nil, 2), slices.Concat(good, tooMany)...)), 1}},
	}
	for _, tc := range bad {
		err := peer.Call(ctx, tc.method, &out, tc.args...)
		require.ErrorIs(t, err, broker.ErrBadArguments, tc.name)
		t.Logf("%s: %v", tc.name, err)
		require.NoError(t, peer.Call(ctx, "Pair", &out, encodedBatch(good), 5), "%s: the connection serves on", tc.name)
		require.Equal(t, "self-decode/500/40/5", out)
		var v uint64
		require.NoError(t, bystander.Call(ctx, "Apply", &v, encodedBatch(small)))
		require.Equal(t, uint64(3), v)
	}
}
