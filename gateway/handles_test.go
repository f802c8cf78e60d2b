package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/remote"
)

func TestHandlesExpireAndAreBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	hs := newHandles(time.Minute, 2)
	hs.now = func() time.Time { return now }
	a, b := new(remote.Ref), new(remote.Ref)
	ha := hs.put(a, "A")
	now = now.Add(2 * time.Second)
	hb := hs.put(b, "B")
	assert.NotEqual(t, ha, hb)
	now = now.Add(2 * time.Second)
	assert.Same(t, a, hs.get(ha), "using a handle makes it recent")
	now = now.Add(2 * time.Second)
	hc := hs.put(new(remote.Ref), "C")
	assert.Equal(t, 2, hs.len(), "at most two")
	assert.Nil(t, hs.get(hb), "the least recently used went")
	assert.NotNil(t, hs.get(ha))

	now = now.Add(61 * time.Second)
	assert.Nil(t, hs.get(ha), "idle too long")
	assert.Nil(t, hs.get(hc))
	assert.Equal(t, 0, hs.len())
	assert.False(t, hs.remove(ha))
}
