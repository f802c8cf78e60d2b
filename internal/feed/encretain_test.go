package feed

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// freshTail returns a tail of n steps no batch has encoded yet, each with
// a value of size bytes, and the total length of their encodings.
func freshTail(n, size int) (*tail, int) {
	t := &tail{epoch: testToken, version: uint64(n), encMu: new(sync.Mutex)}
	total := 0
	for i := range n {
		v := bytes.Repeat([]byte{'v'}, size)
		ls := &logStep{Step: Step{From: uint64(i), Version: uint64(i + 1), Changes: []Change{{Key: enc("k"), Value: enc(v)}}}}
		ls.size = changesSize(ls.Changes)
		total += ls.encodedLen()
		t.log = append(t.log, ls)
	}
	return t, total
}

// TestRacingPushersKeepOneEncoding: pushers that build batches of the
// same fresh steps at once (the subscriptions at one version woken by one
// change: each builds the batch before one of them is stored as the
// shared one) leave the log's steps holding one encoding's worth of bytes,
// not one per pusher. A pusher that encoded the steps into a buffer of its
// own and lost the race for some of them kept that whole buffer reachable
// through the steps it won: with two cores, up to twice the encodings,
// and as many times as pushers run in parallel on a larger machine.
func TestRacingPushersKeepOneEncoding(t *testing.T) {
	const steps, valueSize, pushers, trials = 2048, 100, 8, 30
	worst := 0.0
	for range trials {
		tl, total := freshTail(steps, valueSize)
		base := heapInUse()
		var ready, start sync.WaitGroup
		var go_ atomic.Bool
		ready.Add(pushers)
		start.Add(pushers)
		for range pushers {
			go func() {
				defer start.Done()
				ready.Done()
				for !go_.Load() {
					runtime.Gosched()
				}
				out := stepsBatch(tl, 0, maxBatchBytes, false, 0)
				runtime.KeepAlive(out)
			}()
		}
		ready.Wait()
		go_.Store(true)
		start.Wait()
		// One encoding and the slice header of each step's (24 bytes).
		held := float64(heapInUse()-min(base, heapInUse())) / float64(total+24*steps)
		worst = max(worst, held)
		for _, ls := range tl.log {
			require.NotNil(t, ls.enc.Load())
		}
		runtime.KeepAlive(tl)
	}
	t.Logf("worst: the log's steps hold %.2f times their encodings", worst)
	// Room for the collector's rounding of size classes and a little noise.
	require.Less(t, worst, 1.25, "the steps keep the buffers of several pushers reachable")
}
