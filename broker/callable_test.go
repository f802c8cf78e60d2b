package broker

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// Types declared by mistake, one mistake each.

// ptrOnly declares its method on the pointer: a ptrOnly value has none.
type ptrOnly struct{ n int }

func (p *ptrOnly) Get(ctx context.Context) (int, error) { return p.n, nil }

// ptrPair declares two methods on the pointer.
type ptrPair struct{}

func (*ptrPair) Get(ctx context.Context) (int, error) { return 0, nil }
func (*ptrPair) Set(ctx context.Context, n int) error { return nil }

// empty has no methods at all.
type empty struct{ remoteable.Referenceable }

// helpersOnly has exported methods, none of them of a remote shape.
type helpersOnly struct{}

func (*helpersOnly) Helper() (int, string) { return 0, "" }
func (*helpersOnly) Reset()                {}
func (*helpersOnly) String() string        { return "helpers" } // not listed: fmt.Stringer

// misnamed lists a method it does not have.
type misnamed struct{}

func (*misnamed) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Fetch": {Idempotent: true}}
}
func (*misnamed) Get(ctx context.Context) (int, error) { return 0, nil }

// localTypo means to keep Delete local but misspells it: Delete would be
// remote.
type localTypo struct{}

func (*localTypo) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Delet": {Local: true}}
}
func (*localTypo) Delete(ctx context.Context, name string) error { return nil }

// listedHelper lists a method that cannot be called remotely.
type listedHelper struct{}

func (*listedHelper) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Size": {Idempotent: true}}
}
func (*listedHelper) Get(ctx context.Context) (int, error) { return 0, nil }
func (*listedHelper) Size() int                            { return 0 }

// ctxSecond takes its context second.
type ctxSecond struct{}

func (*ctxSecond) Get(name string, ctx context.Context) (string, error) { return name, nil }
func (*ctxSecond) Ping(ctx context.Context) error                       { return nil }

// nilDeclarer's RemoteMethods reads its receiver: it panics on a nil
// pointer.
type nilDeclarer struct{ local string }

func (d *nilDeclarer) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{d.local: {Local: true}}
}
func (*nilDeclarer) Drop(ctx context.Context) error { return nil }
func (*nilDeclarer) Keep(ctx context.Context) error { return nil }

// panicDeclarer's RemoteMethods panics whatever the value.
type panicDeclarer struct{}

func (*panicDeclarer) RemoteMethods() remoteable.Methods { panic("declarations unavailable") }
func (*panicDeclarer) Drop(ctx context.Context) error    { return nil }

// selfForwarder takes every call through its own Call.
type selfForwarder struct{}

func (*selfForwarder) Call(ctx context.Context, method string, reply any, args ...any) error {
	return nil
}

// TestVerifyCallableRefusesMistakes checks that each mistake in declaring a
// published object is an error matching ErrNotCallable that names the type
// and the method and says what to change.
func TestVerifyCallableRefusesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  any
		msg  string
	}{
		{"value with pointer methods", ptrOnly{},
			"tether: broker.ptrOnly has no remotely callable method: its method Get is declared on *broker.ptrOnly (pointer receiver); publish a pointer (&broker.ptrOnly{...}) instead"},
		{"value with two pointer methods", ptrPair{},
			"tether: broker.ptrPair has no remotely callable method: its methods Get, Set are declared on *broker.ptrPair (pointer receiver); publish a pointer (&broker.ptrPair{...}) instead"},
		{"no methods", &empty{},
			"tether: *broker.empty has no remotely callable method (it has no exported method that is not marked Local): give it an exported method of the form func (ctx context.Context, args...) (R, error) or func (ctx context.Context, args...) error"},
		{"helpers only", &helpersOnly{},
			"tether: *broker.helpersOnly has no remotely callable method (Helper: its second result is string, not error; a remote method returns error or (R, error); Reset: it returns nothing; a remote method returns error or (R, error)): give it an exported method of the form func (ctx context.Context, args...) (R, error) or func (ctx context.Context, args...) error"},
		{"RemoteMethods names a missing method", &misnamed{},
			"tether: (*broker.misnamed).RemoteMethods lists Fetch, which *broker.misnamed does not have: fix the name, or remove the entry"},
		{"RemoteMethods misspells a Local method", &localTypo{},
			"tether: (*broker.localTypo).RemoteMethods lists Delet, which *broker.localTypo does not have: fix the name, or remove the entry"},
		{"RemoteMethods names a method of the wrong shape", &listedHelper{},
			"tether: (*broker.listedHelper).RemoteMethods lists Size, which cannot be called remotely: its result is int, not error; a remote method returns error or (R, error); fix its signature, or remove the entry"},
		{"context not first", &ctxSecond{},
			"tether: (*broker.ctxSecond).Get takes a context.Context as parameter 2: move the context to the first parameter, or mark the method Local in RemoteMethods"},
		{"RemoteMethods panics", &panicDeclarer{},
			"tether: (*broker.panicDeclarer).RemoteMethods panicked (declarations unavailable), so its declarations are unknown: it must not depend on the value (it is called on the first value of the type the broker sees)"},
		{"nil pointer", (*nilDeclarer)(nil),
			"tether: a nil *broker.nilDeclarer has nothing to call: publish a value (&broker.nilDeclarer{...})"},
		{"nil", nil,
			"tether: a nil value has no remotely callable method: publish a value with exported methods"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyCallable(tc.obj)
			require.ErrorIs(t, err, ErrNotCallable)
			assert.EqualError(t, err, tc.msg)
		})
	}
}

// TestVerifyCallableAccepts checks what may be published: a type with a
// callable method next to helpers, a value type whose methods have value
// receivers, an object that forwards every call, a reference, and a type
// whose RemoteMethods panicked on a nil value earlier.
func TestVerifyCallableAccepts(t *testing.T) {
	for _, obj := range []any{newService(), &ptrOnly{}, &selfForwarder{}, &Ref{obj: newService()}} {
		assert.NoError(t, VerifyCallable(obj), "%T", obj)
	}
	require.Error(t, VerifyCallable((*nilDeclarer)(nil)))
	Describe((*nilDeclarer)(nil)) // its RemoteMethods panics
	assert.NoError(t, VerifyCallable(&nilDeclarer{local: "Drop"}), "a panic on a nil value is not remembered for the type")
	d := Describe(&nilDeclarer{local: "Drop"})
	require.Len(t, d.Methods, 1, "Drop is Local")
	assert.Equal(t, "Keep", d.Methods[0].Name)
}

// TestServeRefusesARootWithNothingCallable checks that a server whose
// root cannot be published fails Serve at once with the error, and closes
// the listener so that dialers are refused rather than left waiting for a
// handshake.
func TestServeRefusesARootWithNothingCallable(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	srv := NewServer(ptrOnly{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err = <-done:
	case <-testkit.Ctx(t, 30*time.Second).Done():
		srv.Close()
		t.Fatal("Serve accepted connections for a root with nothing callable")
	}
	require.ErrorIs(t, err, ErrNotCallable)
	assert.EqualError(t, err, "tether: NewServer root: broker.ptrOnly has no remotely callable method: its method Get is declared on *broker.ptrOnly (pointer receiver); publish a pointer (&broker.ptrOnly{...}) instead")
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Serve closed the listener")
	_, err = net.Dial("tcp", ln.Addr().String())
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "a dialer is refused at once: %v", err)

	a, b := net.Pipe()
	defer b.Close()
	_, err = srv.ServeConn(testkit.Ctx(t, 30*time.Second), a)
	assert.ErrorIs(t, err, ErrNotCallable)
	require.NoError(t, srv.Close())

	srv = NewServer(&ctxSecond{})
	assert.ErrorIs(t, srv.Serve(listen(t)), ErrNotCallable)
	require.NoError(t, srv.Close())
}

// describeMe has a callable method, helpers and framework methods.
type describeMe struct{}

func (*describeMe) Get(ctx context.Context) (int, error) { return 1, nil }
func (*describeMe) Helper() (int, string)                { return 0, "" }
func (*describeMe) Hidden() bool                         { return false }
func (*describeMe) String() string                       { return "d" }
func (*describeMe) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}}
}

// guardedDescribeMe hides Hidden from every caller.
type guardedDescribeMe struct{ describeMe }

func (*guardedDescribeMe) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {}, "Helper": {Local: true}, "Hidden": {Local: true}}
}
func (*guardedDescribeMe) Get(ctx context.Context) (int, error) { return 2, nil }
func (*guardedDescribeMe) Size() int                            { return 0 }
func (*guardedDescribeMe) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{"Size": remoteable.PolicyFunc(func(context.Context, string) error {
		return remoteable.ErrAccessDenied
	})}
}

// TestDescribeListsSkippedMethods checks that a description names the
// exported methods that are not callable because of their shape, with the
// reason, over the wire too, and leaves out those a policy refuses.
func TestDescribeListsSkippedMethods(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &describeMe{})
	c := dial(t, addr)
	d, err := c.Root().Describe(testkit.Ctx(t, 30*time.Second))
	require.NoError(t, err)
	assert.Equal(t, []SkippedMethod{
		{Name: "Helper", Reason: "its second result is string, not error; a remote method returns error or (R, error)"},
		{Name: "Hidden", Reason: "its result is bool, not error; a remote method returns error or (R, error)"},
	}, d.Skipped)
	require.Len(t, d.Methods, 1)
	assert.Equal(t, "Get", d.Methods[0].Name)
	err = c.Root().Call(testkit.Ctx(t, 30*time.Second), "Hidden", nil)
	require.ErrorIs(t, err, ErrUnknownMethod)
	assert.ErrorContains(t, err, `*broker.describeMe has no remote method "Hidden": Hidden cannot be called remotely: its result is bool, not error`)

	_, addr = startServer(t, &guardedDescribeMe{})
	c = dial(t, addr)
	d, err = c.Root().Describe(testkit.Ctx(t, 30*time.Second))
	require.NoError(t, err)
	assert.Empty(t, d.Skipped, "Size is refused by the policy; Helper and Hidden are promoted or Local")
	assert.Equal(t, []SkippedMethod{{Name: "Size", Reason: "its result is int, not error; a remote method returns error or (R, error)"}},
		Describe(&guardedDescribeMe{}).Skipped, "locally the description lists it")
}
