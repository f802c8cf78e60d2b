package mistakes

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
)

// library owns a model and compares what comes home with it (guide §8, "A
// mirror going home").
type library struct{ books *cache.Map[string, int] }

func (l *library) Books(ctx context.Context) (*cache.Map[string, int], error) { return l.books, nil }
func (l *library) Same(ctx context.Context, m *cache.Map[string, int]) (bool, error) {
	return m == l.books, nil
}
func (l *library) SameAny(ctx context.Context, m any) (bool, error)              { return m == any(l.books), nil }
func (l *library) Wrong(ctx context.Context, m *cache.Mirror[string, int]) error { return nil }

func TestAMirrorGoingHome(t *testing.T) {
	leakcheck.Check(t)
	reg := registry.New()
	require.NoError(t, reg.Register("library", &library{books: cache.NewMap[string, int]()}))
	addr := serveRegistry(t, reg)
	_, lib := dialManager(t, addr, "library")
	var books *cache.Mirror[string, int]
	require.NoError(t, lib.Call(testkit.Ctx(t, 20*time.Second), "Books", &books))
	defer books.Close()

	same, err := broker.Call[bool](testkit.Ctx(t, 20*time.Second), lib, "Same", books)
	require.NoError(t, err)
	assert.True(t, same, "a mirror passed home is not the model into *cache.Map")
	same, err = broker.Call[bool](testkit.Ctx(t, 20*time.Second), lib, "SameAny", books)
	require.NoError(t, err)
	assert.True(t, same, "a mirror passed home is not the model into any")

	err = lib.Call(testkit.Ctx(t, 20*time.Second), "Wrong", nil, books)
	assert.ErrorIs(t, err, broker.ErrBadArguments)
	assert.Equal(t, broker.InvalidArgument, broker.CodeOf(err))
	assert.Contains(t, err.Error(), "cache.Map", "the error names the model's type to declare")
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
}
