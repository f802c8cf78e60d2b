package remote

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// nested builds values n levels deep: generic lists, which is how a relay
// holds every value it forwards, or typed ones.
func nested(n int, typed bool) any {
	if typed {
		v := reflect.ValueOf(1)
		for i := 0; i < n; i++ {
			s := reflect.MakeSlice(reflect.SliceOf(v.Type()), 1, 1)
			s.Index(0).Set(v)
			v = s
		}
		return v.Interface()
	}
	var v any = int64(1)
	for i := 0; i < n; i++ {
		v = []any{v}
	}
	return v
}

// levels counts the lists in a value decoded into an any.
func levels(v any) int {
	if l, ok := v.([]any); ok && len(l) == 1 {
		return 1 + levels(l[0])
	}
	return 0
}

// depths makes and takes deep values.
type depths struct{ remoteable.Referenceable }

func (*depths) Make(n int, typed bool) (any, error) { return nested(n, typed), nil }
func (*depths) Take(v any) (int, error)             { return levels(v), nil }

// TestRelayAcceptsWhatADirectPeerAccepts: at the depth limit and one level
// either side, arguments and results (generic or typed) get the same
// answer directly and through a relay: up to the limit they arrive whole,
// one level more fails with ErrTooDeep, and no connection on the way drops.
func TestRelayAcceptsWhatADirectPeerAccepts(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	reg := registry.New()
	require.NoError(t, reg.Register("depths", &depths{}))
	upstream := startServer(t, "127.0.0.1:0", reg)
	up := connect(t, upstream.addr)
	relay := startServer(t, "127.0.0.1:0", up.Registry())
	require.NoError(t, up.WaitConnected(ctx))
	upConn := up.Conn()

	maxArg := cborx.DefaultLimits.MaxDepth - 2    // [3, id, target, method, timeout, [arg]]
	maxResult := cborx.DefaultLimits.MaxDepth - 1 // [4, id, result]
	for _, path := range []struct {
		name string
		addr string
	}{{"direct", upstream.addr}, {"relay", relay.addr}} {
		cl := connect(t, path.addr)
		d, err := cl.Registry().Lookup(ctx, "depths")
		require.NoError(t, err)
		for _, typed := range []bool{false, true} {
			for _, n := range []int{maxArg - 1, maxArg, maxArg + 1} {
				got, err := broker.Call[int](ctx, d, "Take", nested(n, typed))
				if n <= maxArg {
					require.NoError(t, err, "%s: argument %d deep (typed %v)", path.name, n, typed)
					assert.Equal(t, n, got)
				} else {
					require.ErrorIs(t, err, broker.ErrTooDeep, "%s: argument %d deep", path.name, n)
				}
			}
			for _, n := range []int{maxResult - 1, maxResult, maxResult + 1} {
				got, err := broker.Call[any](ctx, d, "Make", n, typed)
				if n <= maxResult {
					require.NoError(t, err, "%s: result %d deep (typed %v)", path.name, n, typed)
					assert.Equal(t, n, levels(got))
				} else {
					require.ErrorIs(t, err, broker.ErrTooDeep, "%s: result %d deep", path.name, n)
					var re *broker.RemoteError
					require.True(t, errors.As(err, &re))
					assert.Equal(t, "tether.too-deep", re.Name)
				}
			}
		}
		require.Equal(t, Connected, cl.State())
		assert.Nil(t, cl.Conn().Err(), "%s: the client's link stayed up", path.name)
	}
	assert.Same(t, upConn, up.Conn(), "the relay's upstream link never dropped")
	assert.Nil(t, upConn.Err())
}
