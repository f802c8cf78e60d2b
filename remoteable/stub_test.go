package remoteable_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/remoteable"
)

// Greeter and Counter are interfaces with hand-written stubs, as tether gen
// would write them; Unstubbed has none.
type Greeter interface {
	Greet(ctx context.Context, name string) (string, error)
}

type Counter interface {
	Count(ctx context.Context) (int, error)
}

type Unstubbed interface{ Nothing() }

type greeterStub struct{ c remoteable.Caller }

func (s *greeterStub) TetherCaller() remoteable.Caller { return s.c }
func (s *greeterStub) Greet(ctx context.Context, name string) (string, error) {
	var r string
	err := s.c.Call(ctx, "Greet", &r, name)
	return r, err
}

type counterStub struct{ c remoteable.Caller }

func (s *counterStub) TetherCaller() remoteable.Caller { return s.c }
func (s *counterStub) Count(ctx context.Context) (int, error) {
	var r int
	err := s.c.Call(ctx, "Count", &r)
	return r, err
}

func init() {
	remoteable.RegisterStub[Greeter](func(c remoteable.Caller) Greeter { return &greeterStub{c} },
		"Greet(ctx context.Context, name string) (string, error)")
	remoteable.RegisterStub[Counter](func(c remoteable.Caller) Counter { return &counterStub{c} },
		"Count(ctx context.Context) (int, error)")
}

// recorder is a Caller that records the calls made through it: what As
// wraps, here, is not the thing under test.
type recorder struct{ calls []string }

func (r *recorder) Call(_ context.Context, method string, reply any, args ...any) error {
	r.calls = append(r.calls, method)
	if p, ok := reply.(*string); ok {
		*p = "hello " + args[0].(string)
	}
	return nil
}

// localRef is a Caller standing for an object of this process, as a
// *broker.Ref that came home does.
type localRef struct {
	recorder
	obj any
}

func (l *localRef) Local() (any, bool) { return l.obj, true }

type englishGreeter struct{}

func (englishGreeter) Greet(_ context.Context, name string) (string, error) { return "hi " + name, nil }

// pointerGreeter implements Greeter through its pointer.
type pointerGreeter struct{ word string }

func (p *pointerGreeter) Greet(_ context.Context, name string) (string, error) {
	return p.word + " " + name, nil
}

func TestAsReturnsALocalValueAsItIs(t *testing.T) {
	g, err := remoteable.As[Greeter](englishGreeter{})
	require.NoError(t, err)
	assert.Equal(t, englishGreeter{}, g)

	stub := &greeterStub{c: &recorder{}}
	g, err = remoteable.As[Greeter](stub)
	require.NoError(t, err)
	assert.Same(t, stub, g, "a stub of T is a T")
}

func TestAsWrapsACaller(t *testing.T) {
	rec := &recorder{}
	g, err := remoteable.As[Greeter](rec)
	require.NoError(t, err)
	require.IsType(t, &greeterStub{}, g)
	assert.Same(t, rec, g.(remoteable.Stub).TetherCaller())
	s, err := g.Greet(context.Background(), "alice")
	require.NoError(t, err)
	assert.Equal(t, "hello alice", s)
	assert.Equal(t, []string{"Greet"}, rec.calls)
}

// TestAsRewrapsAStubOfAnotherInterface: a stub is a reference, so As gives
// the stub of T over the Caller it wraps.
func TestAsRewrapsAStubOfAnotherInterface(t *testing.T) {
	rec := &recorder{}
	c, err := remoteable.As[Counter](&greeterStub{c: rec})
	require.NoError(t, err)
	require.IsType(t, &counterStub{}, c)
	assert.Same(t, rec, c.(remoteable.Stub).TetherCaller())
}

// TestAsUnwrapsALocalReference: a reference to an object of this process
// gives the object when it implements T, and a stub over it otherwise.
func TestAsUnwrapsALocalReference(t *testing.T) {
	l := &localRef{obj: englishGreeter{}}
	g, err := remoteable.As[Greeter](l)
	require.NoError(t, err)
	assert.Equal(t, englishGreeter{}, g)

	c, err := remoteable.As[Counter](l)
	require.NoError(t, err)
	assert.IsType(t, &counterStub{}, c)
}

func TestAsErrors(t *testing.T) {
	_, err := remoteable.As[Unstubbed](&recorder{})
	require.ErrorIs(t, err, remoteable.ErrNoStub)
	assert.NotErrorIs(t, err, remoteable.ErrNotCaller)
	assert.EqualError(t, err, "tether: no stub registered for remoteable_test.Unstubbed: run `tether gen -type Unstubbed` in its package (github.com/tether-go/tether/remoteable_test)")

	_, err = remoteable.As[Greeter](42)
	require.ErrorIs(t, err, remoteable.ErrNotCaller)
	assert.Contains(t, err.Error(), "int does not implement remoteable_test.Greeter")

	_, err = remoteable.As[Greeter](nil)
	require.ErrorIs(t, err, remoteable.ErrNotCaller)
	assert.Contains(t, err.Error(), "nil")

	var nilStub *greeterStub
	_, err = remoteable.As[Counter](nilStub)
	assert.Error(t, err, "a nil stub wraps nothing")

	_, err = remoteable.As[Greeter](nilStub)
	require.ErrorIs(t, err, remoteable.ErrNotCaller, "a nil stub of T is no T either")
	var nilLocal *pointerGreeter
	_, err = remoteable.As[Greeter](nilLocal)
	require.ErrorIs(t, err, remoteable.ErrNotCaller, "nor is a nil pointer to a local type implementing T")
	assert.Contains(t, err.Error(), "a nil *remoteable_test.pointerGreeter is not a remoteable_test.Greeter")

	_, err = remoteable.As[string]("x")
	assert.ErrorContains(t, err, "not an interface type")
}

func TestRegisterStubRefusesMistakes(t *testing.T) {
	assert.PanicsWithValue(t,
		"remoteable: RegisterStub[remoteable_test.Greeter]: a stub for remoteable_test.Greeter is registered already",
		func() {
			remoteable.RegisterStub[Greeter](func(c remoteable.Caller) Greeter { return &greeterStub{c} })
		})
	assert.Panics(t, func() {
		remoteable.RegisterStub[*greeterStub](func(c remoteable.Caller) *greeterStub { return &greeterStub{c} })
	}, "not an interface")
	assert.Panics(t, func() { remoteable.RegisterStub[any](func(c remoteable.Caller) any { return c }) }, "the empty interface")
	assert.Panics(t, func() { remoteable.RegisterStub[error](func(c remoteable.Caller) error { return nil }) }, "error")
	assert.Panics(t, func() { remoteable.RegisterStub[Unstubbed](nil) }, "nil wrap")
	_, err := remoteable.As[Unstubbed](&recorder{})
	assert.True(t, errors.Is(err, remoteable.ErrNoStub), "a refused registration records nothing")
}
