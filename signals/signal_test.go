package signals

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEmitReachesSlotsInOrder(t *testing.T) {
	var s Signal[int]
	var got []string
	s.Connect(func(v int) { got = append(got, "a") })
	s.Connect(func(v int) { got = append(got, "b") })
	s.Emit(1)
	assert.Equal(t, []string{"a", "b"}, got)
}

func TestDisconnectIsIdempotentAndStopsDelivery(t *testing.T) {
	var s Signal[string]
	n := 0
	stop := s.Connect(func(string) { n++ })
	other := 0
	s.Connect(func(string) { other++ })
	s.Emit("x")
	stop()
	stop()
	s.Emit("y")
	assert.Equal(t, 1, n)
	assert.Equal(t, 2, other)
	assert.Equal(t, 1, s.Len())
}

func TestDisconnectFromInsideSlot(t *testing.T) {
	var s Signal[int]
	calls := 0
	var stop func()
	stop = s.Connect(func(int) { calls++; stop() })
	s.Emit(1)
	s.Emit(2)
	assert.Equal(t, 1, calls)
}

func TestConnectDuringEmitTakesEffectNextTime(t *testing.T) {
	var s Signal[int]
	late := 0
	s.Connect(func(int) { s.Connect(func(int) { late++ }) })
	s.Emit(1)
	assert.Equal(t, 0, late)
	s.Emit(2)
	assert.Equal(t, 1, late)
}

func TestConcurrentConnectEmitDisconnect(t *testing.T) {
	var s Signal[int]
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				stop := s.Connect(func(int) { mu.Lock(); total++; mu.Unlock() })
				stop()
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				s.Emit(j)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 0, s.Len())
}

func TestEmitDoesNotAllocate(t *testing.T) {
	var s Signal[int]
	s.Connect(func(int) {})
	allocs := testing.AllocsPerRun(100, func() { s.Emit(1) })
	assert.Zero(t, allocs)
}

func TestConnectNilPanics(t *testing.T) {
	var s Signal[int]
	assert.Panics(t, func() { s.Connect(nil) })
}
