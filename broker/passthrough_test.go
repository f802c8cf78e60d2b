package broker

import (
	"math/big"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

// TestRelayModePassesValuesThrough decodes values the way a relay does
// (generically, Copyables kept opaque) and encodes them again: what comes out
// decodes to the same values, and the Copyable was never instantiated.
func TestRelayModePassesValuesThrough(t *testing.T) {
	joined := time.Date(2026, 11, 21, 10, 0, 0, 5, time.UTC)
	values := []any{
		user{Name: "alice", Tags: []string{"x"}, Joined: joined, Extra: point{X: 1, Y: 2}},
		[]any{point{X: 3, Y: 4}, "s", int64(-7), uint64(1 << 63), 2.5, true, nil, []byte{1, 2}},
		map[string]any{"when": joined, "big": big.NewInt(0).Lsh(big.NewInt(1), 80), "err": errNotFound},
		cbor.Tag{Number: 4242, Content: "unknown tag"},
	}
	for _, v := range values {
		e := getEncoder(nil)
		require.NoError(t, e.any(v))
		original := append([]byte(nil), e.buf[cborx.FramePrefix:]...)
		putEncoder(e)

		d := decoder{r: cborx.NewReader(original), opaque: true}
		relayed, err := d.generic()
		require.NoError(t, err)
		if _, ok := v.(user); ok {
			o, isOpaque := relayed.(*RawCopyable)
			require.True(t, isOpaque, "a relay keeps Copyables opaque, got %T", relayed)
			assert.Equal(t, "test.User", o.Name)
		}

		e = getEncoder(nil)
		require.NoError(t, e.any(relayed))
		forwarded := append([]byte(nil), e.buf[cborx.FramePrefix:]...)
		putEncoder(e)

		var want, got any
		d1 := decoder{r: cborx.NewReader(original)}
		want, err = d1.generic()
		require.NoError(t, err)
		d2 := decoder{r: cborx.NewReader(forwarded)}
		got, err = d2.generic()
		require.NoError(t, err)
		if we, ok := want.(map[string]any); ok {
			// Errors are compared by what they carry.
			ge := got.(map[string]any)
			assert.Equal(t, we["err"].(error).Error(), ge["err"].(error).Error())
			assert.ErrorIs(t, ge["err"].(error), errNotFound)
			delete(we, "err")
			delete(ge, "err")
		}
		assert.Equal(t, want, got)
	}
}
