package broker

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// keeper keeps every byte slice it is given.
type keeper struct {
	remoteable.Referenceable
	mu   sync.Mutex
	kept [][]byte
}

func (k *keeper) Keep(b []byte) error {
	k.mu.Lock()
	k.kept = append(k.kept, b)
	k.mu.Unlock()
	return nil
}

func (k *keeper) Echo(b []byte) ([]byte, error) { return b, nil }

// TestReadBuffersKeepDecodedValues: arguments and results of every size
// class the readers handle (in the pooled buffer of the main stream, on a
// message stream, larger than the pooled buffer) stay intact once later
// frames, of other contents, went through the same readers.
func TestReadBuffersKeepDecodedValues(t *testing.T) {
	leakcheck.Check(t)
	k := &keeper{}
	_, addr := startServer(t, k)
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sizes := []int{1, 100, 4000, 30 << 10, 40 << 10, readBufferSize - 10, readBufferSize + 10, 300 << 10}
	var results [][]byte
	for round := range 2 {
		for i, n := range sizes {
			fill := byte(1 + round*len(sizes) + i)
			b := bytes.Repeat([]byte{fill}, n)
			if round == 0 {
				require.NoError(t, cl.Root().Call(ctx, "Keep", nil, b))
			}
			var out []byte
			require.NoError(t, cl.Root().Call(ctx, "Echo", &out, b))
			results = append(results, out)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	require.Len(t, k.kept, len(sizes))
	for i, n := range sizes {
		assert.Equal(t, bytes.Repeat([]byte{byte(1 + i)}, n), k.kept[i], "argument of %d bytes", n)
	}
	for j, out := range results {
		assert.Equal(t, bytes.Repeat([]byte{byte(1 + j)}, sizes[j%len(sizes)]), out, "result of %d bytes", sizes[j%len(sizes)])
	}
}
