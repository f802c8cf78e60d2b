package broker

import (
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

type user struct {
	Name   string
	Email  string `cbor:"email,omitempty"`
	Tags   []string
	Joined time.Time
	Boss   *user
	Extra  any // makes the type impure: the walker encodes it
}

type point struct {
	_    struct{} `cbor:",toarray"`
	X, Y int
}

func init() {
	remoteable.RegisterCopyable[user]("test.User")
	remoteable.RegisterCopyable[point]("test.Point")
}

func TestCopyablesKeepTheirType(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		svc := newService()
		cl, _ := tr.connect(t, svc, nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		joined := time.Date(2026, 11, 21, 10, 30, 0, 123456789, time.UTC)
		alice := user{Name: "alice", Tags: []string{"admin"}, Joined: joined, Boss: &user{Name: "carol"}, Extra: point{X: 1, Y: 2}}

		values := []any{
			alice,
			&alice,
			[]any{alice, point{X: 3, Y: 4}, "plain"},
			map[string]any{"u": alice, "n": int64(7)},
		}
		for _, v := range values {
			require.NoError(t, cl.Root().Call(ctx, "Keep", nil, v))
			svc.mu.Lock()
			kept := svc.kept
			svc.mu.Unlock()
			var back any
			require.NoError(t, cl.Root().Call(ctx, "Kept", &back))
			switch v.(type) {
			case user, *user:
				// Into an `any`, a Copyable decodes to its registered type
				// (by value) on both sides.
				assert.Equal(t, alice, kept)
				assert.Equal(t, alice, back)
			default:
				assert.Equal(t, normalise(v), kept)
				assert.Equal(t, normalise(v), back)
			}
		}

		// Into a typed reply.
		require.NoError(t, cl.Root().Call(ctx, "Keep", nil, alice))
		u, err := Call[user](ctx, cl.Root(), "Kept")
		require.NoError(t, err)
		assert.Equal(t, alice, u)
		up, err := Call[*user](ctx, cl.Root(), "Kept")
		require.NoError(t, err)
		assert.Equal(t, alice, *up)
		_, err = Call[point](ctx, cl.Root(), "Kept")
		assert.ErrorIs(t, err, ErrBadReply)
	})
}

// normalise gives the value an `any` receives for v: Copyables keep their
// type, ints become int64, []any and map[string]any stay.
func normalise(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalise(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = normalise(e)
		}
		return out
	case *user:
		return *x
	case int:
		return int64(x)
	}
	return v
}

// TestUnregisteredCopyable: a Copyable whose name this process never
// registered (as a peer with other registrations would send it) reaches an
// `any` as plain data, and is an error for a typed destination.
func TestUnregisteredCopyable(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	_, addr := startServer(t, svc)
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	ghost := &RawCopyable{Name: "nobody.Ghost", State: map[string]any{"x": int64(1)}}
	require.NoError(t, cl.Root().Call(ctx, "Keep", nil, ghost))
	svc.mu.Lock()
	assert.Equal(t, ghost, svc.kept, "the handler's any holds the name and the state; nothing was instantiated")
	svc.mu.Unlock()

	_, err := Call[user](ctx, cl.Root(), "Kept")
	assert.ErrorIs(t, err, ErrUnknownType)
	assert.Contains(t, err.Error(), `"nobody.Ghost" is not registered`)

	// A registered Copyable comes back typed, unless the caller asks for
	// every Copyable raw.
	require.NoError(t, cl.Root().Call(ctx, "Keep", nil, point{X: 1, Y: 2}))
	var got any
	require.NoError(t, cl.Root().Call(ctx, "Kept", &got))
	assert.Equal(t, point{X: 1, Y: 2}, got)
	require.NoError(t, cl.Root().Call(WithRawCopyables(ctx), "Kept", &got))
	assert.Equal(t, &RawCopyable{Name: "test.Point", State: []any{int64(1), int64(2)}}, got)

	// Only the codec writes Tether's tags, and a raw Copyable needs a name.
	err = cl.Root().Call(ctx, "Keep", nil, cbor.Tag{Number: 59000, Content: 7})
	assert.ErrorContains(t, err, "cannot send a Tether value")
	err = cl.Root().Call(ctx, "Keep", nil, &RawCopyable{State: 1})
	assert.ErrorContains(t, err, "needs the name")
	assert.Nil(t, cl.Err())
}

// plain exercises plain data through fxamacker (pure types) and the walker.
type plain struct {
	I8     int8
	U16    uint16
	F32    float32
	B      bool
	Bytes  []byte
	M      map[string][]int
	Arr    [3]uint8
	Nested struct{ A, B string }
	Ptr    *int
	Skip   string `cbor:"-"`
	Named  string `json:"named_json"`
}

type withRef struct {
	Label string
	Obj   *counter
	Plain plain
	Any   any
	Err   error
}

func (s *service) RoundTrip(p plain) (plain, error) { return p, nil }
func (s *service) Wrap(label string) (withRef, error) {
	return withRef{Label: label, Obj: &counter{n: 41}, Any: []any{int64(1), "two"}, Err: errNotFound}, nil
}

func TestPlainDataRoundTrip(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	seven := 7
	in := plain{I8: -3, U16: 65000, F32: 1.5, B: true, Bytes: []byte{0, 1}, M: map[string][]int{"a": {1, 2}},
		Arr: [3]uint8{9, 8, 7}, Ptr: &seven, Skip: "not sent", Named: "json"}
	in.Nested.A = "x"
	out, err := Call[plain](ctx, cl.Root(), "RoundTrip", in)
	require.NoError(t, err)
	in.Skip = ""
	assert.Equal(t, in, out)

	// A struct holding a reference, an interface and an error.
	w, err := Call[struct {
		Label string
		Obj   *Ref
		Any   any
		Err   error
	}](ctx, cl.Root(), "Wrap", "box")
	require.NoError(t, err)
	assert.Equal(t, "box", w.Label)
	assert.Equal(t, []any{int64(1), "two"}, w.Any)
	assert.ErrorIs(t, w.Err, errNotFound)
	n, err := Call[int](ctx, w.Obj, "Inc")
	require.NoError(t, err)
	assert.Equal(t, 42, n)

	// Overflow and type mismatches are clear errors, not truncation.
	_, err = Call[int8](ctx, cl.Root(), "Add", 100, 100)
	assert.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), "overflows int8")
	_, err = Call[string](ctx, cl.Root(), "Add", 1, 2)
	assert.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), "cannot decode unsigned integer into string")
}
