package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// place is plain data (fxamacker decodes it); placeV2 is a newer version
// of it with a field added; job is a struct the codec walks itself (it
// holds a reference).
type place struct{ X, Y int }

type placeV2 struct{ X, Y, Z int }

type job struct {
	Name string
	Cb   *Ref
}

// other shares no field with place.
type other struct{ A, B int }

// strict is a manager with parameters of each shape the decoder treats
// differently.
type strict struct {
	mu   sync.Mutex
	seen []any
}

func (s *strict) record(v any) {
	s.mu.Lock()
	s.seen = append(s.seen, v)
	s.mu.Unlock()
}

func (s *strict) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *strict) Place(p place) (place, error)       { s.record(p); return p, nil }
func (s *strict) PlaceV2(p placeV2) (placeV2, error) { s.record(p); return p, nil }
func (s *strict) Places(ps []place) (int, error)     { s.record(ps); return len(ps), nil }
func (s *strict) Job(j job) (string, error)          { s.record(j); return j.Name, nil }
func (s *strict) Other() (other, error)              { return other{A: 1, B: 2}, nil }
func (s *strict) OldPlace() (place, error)           { return place{X: 1, Y: 2}, nil }
func (s *strict) NewPlace() (placeV2, error)         { return placeV2{X: 1, Y: 2, Z: 3}, nil }
func (s *strict) Keep(v any) error                   { s.record(v); return nil }
func (s *strict) Ref(r *Ref) (bool, error)           { s.record(r); return r != nil, nil }
func (s *strict) Stringer(v fmt.Stringer) (string, error) {
	s.record(v)
	return v.String(), nil
}
func (s *strict) Optional(c *counter) (bool, error) { s.record(c); return c == nil, nil }
func (s *strict) Err(err error) (string, error) {
	s.record(err)
	if err == nil {
		return "<nil>", nil
	}
	return err.Error(), nil
}
func (s *strict) Validation(v *validationError) (string, error) { s.record(v); return v.Field, nil }
func (s *strict) ErrValue() (any, error)                        { return errNotFound, nil }
func (s *strict) Copyable(v any) (any, error)                   { return v, nil }
func (s *strict) Returns(v any) (any, error)                    { return v, nil }

func (s *strict) last() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1]
}

// relayProxy forwards every call to up, without Go types: the way a relay
// publishes an upstream object.
type relayProxy struct{ up *Ref }

func (p *relayProxy) Call(ctx context.Context, method string, reply any, args ...any) error {
	return p.up.Call(ctx, method, reply, args...)
}

// TestMismatchedStructIsRefused: a struct that shares no field with the
// parameter's type, or a result that shares none with the reply's, is an
// error naming both, never a zero value; so is a field of the wrong type.
func TestMismatchedStructIsRefused(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, addr := startServer(t, s)
	root := dial(t, addr).Root()

	err := root.Call(ctx, "Place", nil, struct{ A, B int }{1, 2})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "argument 1 of Place")
	assert.Contains(t, err.Error(), `a map with keys "A", "B" shares no field with broker.place (fields X, Y)`)
	assertLoud(t, err)

	// Inside a slice, and in a struct the codec walks itself.
	err = root.Call(ctx, "Places", nil, []any{place{X: 1}, other{A: 1}})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), `[1]: a map with keys "A", "B" shares no field with broker.place`)
	err = root.Call(ctx, "Job", nil, map[string]int{"Title": 1})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), `a map with keys "Title" shares no field with broker.job (fields Name, Cb)`)

	// A field of the wrong type names the field.
	err = root.Call(ctx, "Place", nil, map[string]any{"X": "one"})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "field broker.place.X: cannot decode UTF-8 text string into int")
	assert.Equal(t, 0, s.calls(), "no handler ran")

	// An empty map or struct fits (every field keeps its zero value), and
	// names match ignoring case.
	got, err := Call[place](ctx, root, "Place", struct{}{})
	require.NoError(t, err)
	assert.Equal(t, place{}, got)
	got, err = Call[place](ctx, root, "Place", map[string]int{"x": 4, "Y": 5})
	require.NoError(t, err)
	assert.Equal(t, place{X: 4, Y: 5}, got)

	// Results: a reply sharing no field with the result is ErrBadReply.
	_, err = Call[place](ctx, root, "Other")
	require.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), `a map with keys "A", "B" shares no field with broker.place (fields X, Y)`)
	assertLoud(t, err)
	_, err = Call[job](ctx, root, "Other")
	require.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), "shares no field with broker.job")
}

// assertLoud checks that err's message starts "tether:", once.
func assertLoud(t *testing.T, err error) {
	t.Helper()
	assert.True(t, strings.HasPrefix(err.Error(), "tether: "), "the message starts with tether: %q", err.Error())
	assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), "tether: appears once in %q", err.Error())
}

// TestSchemaEvolution: a newer peer with an added field and an older one
// without it keep working with each other, both ways: unknown fields are
// skipped, missing ones are zero.
func TestSchemaEvolution(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, addr := startServer(t, s)
	root := dial(t, addr).Root()

	// A newer caller sends Z to an older handler; an older caller leaves Z
	// out for a newer one.
	old, err := Call[place](ctx, root, "Place", placeV2{X: 1, Y: 2, Z: 3})
	require.NoError(t, err)
	assert.Equal(t, place{X: 1, Y: 2}, old)
	newer, err := Call[placeV2](ctx, root, "PlaceV2", place{X: 1, Y: 2})
	require.NoError(t, err)
	assert.Equal(t, placeV2{X: 1, Y: 2}, newer)

	// Results, both ways.
	newer, err = Call[placeV2](ctx, root, "OldPlace")
	require.NoError(t, err)
	assert.Equal(t, placeV2{X: 1, Y: 2}, newer)
	old, err = Call[place](ctx, root, "NewPlace")
	require.NoError(t, err)
	assert.Equal(t, place{X: 1, Y: 2}, old)

	// A Copyable whose newer version has a field this side lacks: the
	// value sent under the name by such a peer (as it travels, a
	// *RawCopyable) decodes to this side's type.
	kept, err := Call[any](ctx, root, "Copyable", &RawCopyable{Name: "test.User", State: map[string]any{"Name": "alice", "Nickname": "al"}})
	require.NoError(t, err)
	assert.Equal(t, user{Name: "alice"}, kept)
}

// TestCopyableRegisteredAsAnotherType: a name registered to different Go
// types on the two sides is refused when the fields cannot match, naming
// the name, this side's type and what was sent. The sending peer is
// simulated by a *RawCopyable, which travels exactly as that peer's typed
// value would.
func TestCopyableRegisteredAsAnotherType(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, addr := startServer(t, s)
	root := dial(t, addr).Root()
	foreign := &RawCopyable{Name: "test.User", State: map[string]any{"Sku": "x-1", "Price": 3}}

	err := root.Call(ctx, "Keep", nil, foreign)
	require.ErrorIs(t, err, ErrBadArguments)
	for _, want := range []string{`Copyable "test.User" is registered here as broker.user`, `"Price", "Sku"`, "Name, email, Tags", "register the same type on both"} {
		assert.Contains(t, err.Error(), want)
	}
	assertLoud(t, err)
	assert.Equal(t, 0, s.calls(), "the handler never saw a zero user")

	// Inside another value.
	err = root.Call(ctx, "Keep", nil, map[string]any{"u": foreign})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), `Copyable "test.User" is registered here as broker.user`)
}

// TestCopyableResultRegisteredAsAnotherType: the reply side of
// TestCopyableRegisteredAsAnotherType.
func TestCopyableResultRegisteredAsAnotherType(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	svc := newService()
	_, addr := startServer(t, svc)
	root := dial(t, addr).Root()
	svc.mu.Lock()
	svc.kept = &RawCopyable{Name: "test.User", State: map[string]any{"Sku": "x-1"}}
	svc.mu.Unlock()

	_, err := Call[any](ctx, root, "Kept")
	require.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), `Copyable "test.User" is registered here as broker.user`)
	assert.Contains(t, err.Error(), `a map with keys "Sku"`)
	assertLoud(t, err)
	_, err = Call[user](ctx, root, "Kept")
	require.ErrorIs(t, err, ErrBadReply)
	assert.Contains(t, err.Error(), `Copyable "test.User" is registered here as broker.user`)
}

// TestErrorArgumentTravelsAsError: an error passed as an argument arrives
// as an error, with its message, and errors.Is / errors.As work for
// registered ones; a parameter of a registered error type receives it.
func TestErrorArgumentTravelsAsError(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, addr := startServer(t, s)
	root := dial(t, addr).Root()

	msg, err := Call[string](ctx, root, "Err", errors.New("x"))
	require.NoError(t, err)
	assert.Equal(t, "x", msg)
	var re *RemoteError
	require.ErrorAs(t, s.last().(error), &re)
	assert.Equal(t, "error", re.Name)

	_, err = Call[string](ctx, root, "Err", fmt.Errorf("loading: %w", errNotFound))
	require.NoError(t, err)
	assert.ErrorIs(t, s.last().(error), errNotFound)
	assert.Equal(t, "loading: not found", s.last().(error).Error())

	// Into any, too.
	require.NoError(t, root.Call(ctx, "Keep", nil, errors.New("y")))
	got, ok := s.last().(error)
	require.True(t, ok, "an error into any arrives as an error, got %T", s.last())
	assert.Equal(t, "y", got.Error())

	// A registered error type reaches a parameter of its own type.
	field, err := Call[string](ctx, root, "Validation", &validationError{Field: "name", Reason: "empty"})
	require.NoError(t, err)
	assert.Equal(t, "name", field)

	// An unregistered one cannot: the message says what to do.
	_, err = Call[string](ctx, root, "Validation", errors.New("z"))
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "cannot be decoded into *broker.validationError")
	assert.Contains(t, err.Error(), "remoteable.RegisterError")
	assertLoud(t, err)

	// A nil error is no error.
	msg, err = Call[string](ctx, root, "Err", nil)
	require.NoError(t, err)
	assert.Equal(t, "<nil>", msg)
}

// TestErrorsThroughARelay: an error passed as an argument, returned as a
// result or returned as the call's error through a relay (which decodes
// into any and encodes again) still arrives as an error with its
// registered name; unknown Copyables and plain structs pass through too.
func TestErrorsThroughARelay(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, up := startServer(t, s)
	upRoot := dial(t, up).Root()
	_, relay := startServer(t, &relayProxy{up: upRoot})
	root := dial(t, relay).Root()

	_, err := Call[string](ctx, root, "Err", fmt.Errorf("loading: %w", errNotFound))
	require.NoError(t, err)
	var re *RemoteError
	require.ErrorAs(t, s.last().(error), &re)
	assert.Equal(t, "test.not-found", re.Name)
	assert.ErrorIs(t, re, errNotFound)
	assert.Equal(t, "loading: not found", re.Message)

	// A result that is an error value.
	v, err := Call[any](ctx, root, "ErrValue")
	require.NoError(t, err)
	got, ok := v.(error)
	require.True(t, ok, "an error result through a relay arrives as an error, got %T (%v)", v, v)
	assert.ErrorIs(t, got, errNotFound)

	// An error returned by the handler.
	up2 := newService()
	_, up2Addr := startServer(t, up2)
	_, relay2 := startServer(t, &relayProxy{up: dial(t, up2Addr).Root()})
	err = dial(t, relay2).Root().Call(ctx, "NotFound", nil)
	require.ErrorIs(t, err, errNotFound)
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "test.not-found", re.Name)

	// Unknown Copyables and plain structs still pass through, and a
	// mismatch is refused by the far end, whose refusal comes back.
	raw := &RawCopyable{Name: "elsewhere.Thing", State: map[string]any{"k": "v"}}
	back, err := Call[any](ctx, root, "Returns", raw)
	require.NoError(t, err)
	assert.Equal(t, raw, back)
	p, err := Call[place](ctx, root, "Place", placeV2{X: 1, Y: 2, Z: 3})
	require.NoError(t, err)
	assert.Equal(t, place{X: 1, Y: 2}, p)
	err = root.Call(ctx, "Place", nil, other{A: 1})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "shares no field with broker.place")
	assertLoud(t, err)
}

// TestReleasedOrDeadReferenceIsRefusedAtTheSender: a reference that was
// released, or whose connection died, is refused when it is passed as an
// argument, to the same connection or a third party, before anything is
// sent.
func TestReleasedOrDeadReferenceIsRefusedAtTheSender(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, addrA := startServer(t, newService())
	b := &strict{}
	_, addrB := startServer(t, b)
	toA := dial(t, addrA)
	toB := dial(t, addrB)

	c1, err := Call[*Ref](ctx, toA.Root(), "NewCounter")
	require.NoError(t, err)
	c1.Release()
	err = toB.Root().Call(ctx, "Ref", nil, c1)
	require.ErrorIs(t, err, ErrReleased)
	assert.Contains(t, err.Error(), "argument 1 of Ref")
	assert.Contains(t, err.Error(), "was released")
	assertLoud(t, err)
	err = toA.Root().Call(ctx, "Identity", nil, c1)
	require.ErrorIs(t, err, ErrReleased)
	// Inside a value too.
	err = toB.Root().Call(ctx, "Keep", nil, []any{c1})
	require.ErrorIs(t, err, ErrReleased)

	c2, err := Call[*Ref](ctx, toA.Root(), "NewCounter")
	require.NoError(t, err)
	require.NoError(t, toA.Close())
	<-toA.Done()
	err = toB.Root().Call(ctx, "Ref", nil, c2)
	require.ErrorIs(t, err, ErrDeadReference)
	assert.Contains(t, err.Error(), "its connection has ended")
	assertLoud(t, err)
	assert.Equal(t, 0, b.calls(), "nothing reached the third party")

	// B's link is unharmed.
	ok, err := Call[bool](ctx, toB.Root(), "Ref", toB.Root())
	require.NoError(t, err)
	assert.True(t, ok)
}

// TestNilForAReferenceParameter: nil for a *broker.Ref or a non-empty
// interface parameter is ErrBadArguments naming the argument and the type,
// never a panic in the handler; a pointer, any and error parameter take
// nil.
func TestNilForAReferenceParameter(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	s := &strict{}
	_, addr := startServer(t, s)
	root := dial(t, addr).Root()

	for _, local := range []bool{false, true} {
		r := root
		if local {
			r = localRef(s) // the same rules for an object of this process
		}
		err := r.Call(ctx, "Ref", nil, nil)
		require.ErrorIs(t, err, ErrBadArguments)
		assert.NotErrorIs(t, err, ErrPanic)
		assert.Contains(t, err.Error(), "argument 1 of Ref is nil, but its parameter is *broker.Ref: pass a reference")
		assertLoud(t, err)
		err = r.Call(ctx, "Ref", nil, (*Ref)(nil))
		require.ErrorIs(t, err, ErrBadArguments)

		err = r.Call(ctx, "Stringer", nil, nil)
		require.ErrorIs(t, err, ErrBadArguments)
		assert.Contains(t, err.Error(), "argument 1 of Stringer is nil, but its parameter is fmt.Stringer")
		assertLoud(t, err)

		isNil, err := Call[bool](ctx, r, "Optional", nil)
		require.NoError(t, err)
		assert.True(t, isNil, "a pointer to a Referenceable is an optional reference")
		require.NoError(t, r.Call(ctx, "Keep", nil, nil))
		msg, err := Call[string](ctx, r, "Err", nil)
		require.NoError(t, err)
		assert.Equal(t, "<nil>", msg)
	}
	assert.Equal(t, 6, s.calls(), "only the calls that take nil ran")
}
