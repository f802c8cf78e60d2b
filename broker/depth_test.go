package broker

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// The deepest values a peer accepts: a message holds 32 levels, a call's
// arguments start at level 3 and a result at level 2.
var (
	maxArgDepth    = cborx.DefaultLimits.MaxDepth - 2
	maxResultDepth = cborx.DefaultLimits.MaxDepth - 1
)

// chain is an impure linked structure: each link is a map (one CBOR level)
// reached through a pointer (a Go level with no CBOR level).
type chain struct {
	Next *chain
	Note any
}

// depthShape builds values of a given CBOR depth and measures them.
type depthShape struct {
	name string
	make func(n int) any
}

// depthShapes are the values the depth tests send: generic lists (a relay
// holds everything this way), typed lists (encoded by fxamacker), an impure
// pointer chain, and lists ending in a Copyable (a tag and an array around
// a toarray struct: three levels).
var depthShapes = []depthShape{
	{"[]any", func(n int) any {
		var v any = int64(1)
		for i := 0; i < n; i++ {
			v = []any{v}
		}
		return v
	}},
	{"typed", func(n int) any {
		v := reflect.ValueOf(1)
		for i := 0; i < n; i++ {
			s := reflect.MakeSlice(reflect.SliceOf(v.Type()), 1, 1)
			s.Index(0).Set(v)
			v = s
		}
		return v.Interface()
	}},
	{"chain", func(n int) any {
		var c *chain
		for i := 0; i < n; i++ {
			c = &chain{Next: c}
		}
		return c
	}},
	{"copyable", func(n int) any {
		var v any = point{X: 1, Y: 2}
		for i := 0; i < n-3; i++ {
			v = []any{v}
		}
		return v
	}},
}

// cborDepth measures the nesting of v as encoded, the way Validate counts.
func cborDepth(t *testing.T, v any) int {
	t.Helper()
	b, err := Marshal(v)
	require.NoError(t, err)
	for d := 0; ; d++ {
		if cborx.CheckDepth(b, d) == nil {
			return d
		}
	}
}

// deepService makes and takes values of any depth.
type deepService struct{ remoteable.Referenceable }

func (*deepService) Make(shape string, n int) (any, error) {
	for _, s := range depthShapes {
		if s.name == shape {
			return s.make(n), nil
		}
	}
	return nil, fmt.Errorf("no shape %q", shape)
}

func (*deepService) MakeChain(n int) (*chain, error) { return depthShapes[2].make(n).(*chain), nil }

func (*deepService) Take(v any) (bool, error) { return v != nil, nil }

func (*deepService) TakeChain(c *chain) (bool, error) { return c != nil, nil }

func (*deepService) Ping() (string, error) { return "pong", nil }

// TestDepthLimitFailsTheValueNotTheLink: a value nested deeper than the
// receiver accepts is refused by its sender, with ErrTooDeep: an argument
// fails the call before it is sent, a result becomes a tether.too-deep
// failure. The limit is exactly the receiver's, whatever the value's shape:
// one level less goes through. The connection stays up throughout.
func TestDepthLimitFailsTheValueNotTheLink(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &deepService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	root := cl.Root()
	for _, shape := range depthShapes {
		t.Run(shape.name, func(t *testing.T) {
			for _, n := range []int{maxArgDepth - 1, maxArgDepth, maxArgDepth + 1} {
				v := shape.make(n)
				require.Equal(t, n, cborDepth(t, v))
				method := "Take"
				if shape.name == "chain" {
					method = "TakeChain" // decoded into its Go type, pointers and all
				}
				took, err := Call[bool](ctx, root, method, v)
				if n <= maxArgDepth {
					require.NoError(t, err, "an argument %d deep", n)
					assert.True(t, took)
					continue
				}
				require.ErrorIs(t, err, ErrTooDeep, "an argument %d deep", n)
				var re *RemoteError
				assert.False(t, errors.As(err, &re), "refused before it was sent: %v", err)
				assert.Contains(t, err.Error(), "flatten")
			}
			for _, n := range []int{maxResultDepth - 1, maxResultDepth, maxResultDepth + 1} {
				var err error
				var got any
				if shape.name == "chain" {
					var c *chain
					err = root.Call(ctx, "MakeChain", &c, n)
					got = c
				} else {
					err = root.Call(ctx, "Make", &got, shape.name, n)
				}
				if n <= maxResultDepth {
					require.NoError(t, err, "a result %d deep", n)
					assert.Equal(t, n, cborDepth(t, got))
					continue
				}
				require.ErrorIs(t, err, ErrTooDeep, "a result %d deep", n)
				var re *RemoteError
				require.ErrorAs(t, err, &re, "the server sent the failure instead of the result")
				assert.Equal(t, "tether.too-deep", re.Name)
			}
			require.NoError(t, cl.Err(), "the connection stayed up")
			pong, err := Call[string](ctx, root, "Ping")
			require.NoError(t, err)
			assert.Equal(t, "pong", pong)
		})
	}
}

// TestCyclicValueIsTooDeep: a cyclic value fails as too deep, through
// containers or through pointers and interfaces alone.
func TestCyclicValueIsTooDeep(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &deepService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	loop := &chain{}
	loop.Next = loop
	loop.Note = "x"
	_, err := Call[bool](ctx, cl.Root(), "Take", loop)
	require.ErrorIs(t, err, ErrTooDeep)
	var p any
	p = &p // a pointer to an interface holding itself: no CBOR level at all
	_, err = Call[bool](ctx, cl.Root(), "Take", p)
	require.ErrorIs(t, err, ErrTooDeep)
	require.NoError(t, cl.Err())
	_, err = Call[string](context.Background(), cl.Root(), "Ping")
	require.NoError(t, err)
}
