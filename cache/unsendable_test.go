package cache_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/feed"
)

// TestSetOfWhatCannotBeSentIsATypedError: a model refuses a key or value
// its mirrors could not receive with an error that matches a sentinel
// (broker.ErrBadArguments for a type that cannot be sent at all, such as a
// channel; broker.ErrTooDeep for nesting), starts "tether:" once, and
// names the key. It read "cache: value for c: cbor: unsupported type: chan
// int" (no sentinel, code unknown) and "cache: key ...: tether: value
// nested too deeply".
func TestSetOfWhatCannotBeSentIsATypedError(t *testing.T) {
	m := cache.NewMap[string, any]()
	err := m.Set("c", make(chan int))
	require.ErrorIs(t, err, broker.ErrBadArguments)
	assert.Equal(t, broker.InvalidArgument, broker.CodeOf(err))
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	assert.Contains(t, err.Error(), `"c"`)
	assert.Contains(t, err.Error(), "chan int")

	err = m.Set("deep", nest(feed.EntryDepth+1))
	require.ErrorIs(t, err, broker.ErrTooDeep)
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	assert.Contains(t, err.Error(), `"deep"`)

	keyed := cache.NewMap[any, int]()
	err = keyed.Set(func() {}, 1)
	require.ErrorIs(t, err, broker.ErrBadArguments)
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Contains(t, err.Error(), "key")

	v := cache.NewValue[any](1)
	err = v.Set(make(chan int))
	require.ErrorIs(t, err, broker.ErrBadArguments)
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), err.Error())
	assert.Equal(t, 1, v.Get(), "the value is unchanged")
	assert.Equal(t, 0, m.Len(), "the map is unchanged")
}
