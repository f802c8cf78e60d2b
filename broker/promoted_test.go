package broker

import (
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// base is what the test types embed: a value method, a pointer method,
// and one the outer types shadow.
type base struct{}

func (base) Hello() (string, error)  { return "base hello", nil }
func (*base) Poke() (string, error)  { return "base poke", nil }
func (base) Shared() (string, error) { return "base shared", nil }

// reader is an interface the test types embed.
type reader interface{ Read() (string, error) }

type readerImpl struct{}

func (readerImpl) Read() (string, error) { return "read", nil }

// byValue embeds base and an interface by value, and shadows Shared with
// a value receiver: the pointer type's Shared is then the compiler's
// wrapper around its own.
type byValue struct {
	remoteable.Referenceable
	base
	reader
}

func (*byValue) Own() (string, error)   { return "own", nil }
func (byValue) Shared() (string, error) { return "outer shared", nil }

// byPointer embeds *base and shadows Shared with a pointer receiver.
type byPointer struct {
	remoteable.Referenceable
	*base
}

func (*byPointer) Shared() (string, error) { return "outer shared", nil }

// nested embeds byValue: byValue's own methods are promoted here.
type nested struct {
	remoteable.Referenceable
	byValue
}

func (*nested) Mine() (string, error) { return "mine", nil }

// optedIn lists Hello, with no options: that exposes it; Poke stays hidden.
type optedIn struct {
	remoteable.Referenceable
	*base
}

func (*optedIn) RemoteMethods() remoteable.Methods { return remoteable.Methods{"Hello": {}} }

// generic shadows and declares methods in a generic type.
type generic[T any] struct {
	remoteable.Referenceable
	*base
	_ T
}

func (*generic[T]) Shared() (string, error) { return "generic shared", nil }
func (*generic[T]) Own() (string, error)    { return "own", nil }

// declarer declares its own method remote; a type that embeds it does not
// inherit that declaration.
type declarer struct{}

func (*declarer) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Inner": {Idempotent: true}}
}
func (*declarer) Inner() (string, error) { return "inner", nil }

type embedsDeclarer struct {
	remoteable.Referenceable
	*declarer
}

func (*embedsDeclarer) Own() (string, error) { return "own", nil }

// TestPromotedMethodsAreNotRemote: a method a type gets from an embedded
// field (by value, by pointer, an interface, at any depth) is not callable
// remotely, nor described, unless the type's own RemoteMethods lists it;
// the type's own methods, shadowing ones included (pointer or value
// receiver, generic types too), are.
func TestPromotedMethodsAreNotRemote(t *testing.T) {
	leakcheck.Check(t)
	for _, c := range []struct {
		name     string
		obj      any
		callable map[string]string // method → result
		hidden   []string
	}{
		{"by value", &byValue{reader: readerImpl{}}, map[string]string{"Own": "own", "Shared": "outer shared"}, []string{"Hello", "Poke", "Read"}},
		{"by pointer", &byPointer{base: &base{}}, map[string]string{"Shared": "outer shared"}, []string{"Hello", "Poke"}},
		{"nested", &nested{byValue: byValue{reader: readerImpl{}}}, map[string]string{"Mine": "mine"}, []string{"Own", "Shared", "Hello", "Poke", "Read"}},
		{"opted in", &optedIn{base: &base{}}, map[string]string{"Hello": "base hello"}, []string{"Poke", "Shared"}},
		{"generic", &generic[int]{base: &base{}}, map[string]string{"Shared": "generic shared", "Own": "own"}, []string{"Hello", "Poke"}},
		{"embedded declarer", &embedsDeclarer{declarer: &declarer{}}, map[string]string{"Own": "own"}, []string{"Inner"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, addr := startServer(t, c.obj)
			cl := dial(t, addr)
			ctx := testkit.Ctx(t, 30*time.Second)
			for m, want := range c.callable {
				got, err := Call[string](ctx, cl.Root(), m)
				require.NoError(t, err, m)
				assert.Equal(t, want, got, m)
			}
			for _, m := range c.hidden {
				_, err := Call[string](ctx, cl.Root(), m)
				require.ErrorIs(t, err, ErrUnknownMethod, m)
				assert.Contains(t, err.Error(), "promoted from an embedded field", m)
			}
			d, err := cl.Root().Describe(ctx)
			require.NoError(t, err)
			var described []string
			for _, m := range d.Methods {
				described = append(described, m.Name)
			}
			var want []string
			for m := range c.callable {
				want = append(want, m)
			}
			sort.Strings(want)
			assert.Equal(t, want, described, "described: only what is callable")
			require.NoError(t, cl.Err())
		})
	}
}
