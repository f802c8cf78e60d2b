package cache

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
)

// TestModelRefusesInvalidUTF8: a key or value holding a Go string that is
// not valid UTF-8 is refused by Set (its mirrors' peers would refuse the
// batch carrying it, and the connection with it), and the model is left
// as it was.
func TestModelRefusesInvalidUTF8(t *testing.T) {
	m := NewMap[string, []string]()
	require.ErrorIs(t, m.Set("k", []string{"ok", "caf\xe9"}), broker.ErrBadArguments)
	err := m.Set("caf\xe9", nil)
	require.ErrorIs(t, err, broker.ErrBadArguments)
	assert.Contains(t, err.Error(), "UTF-8")
	assert.Equal(t, 0, m.Len())
	assert.Equal(t, uint64(0), m.Version())
}
