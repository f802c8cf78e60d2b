package broker

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestHandleStaysAliveDuringItsCall makes one-shot large calls on fresh
// handles while the garbage collector runs: a handle must not be released
// (and its object dropped) while its own call is on the way.
func TestHandleStaysAliveDuringItsCall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	big := bytes.Repeat([]byte{1}, 1<<20)
	for i := 0; i < 40; i++ {
		ctr, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
		require.NoError(t, err)
		// The last use of ctr: after this line nothing else refers to it.
		require.NoError(t, ctr.Call(ctx, "Keep", nil, big), "call %d", i)
	}
}

func (c *counter) Keep(b []byte) error { return nil }

// hub hands out the root of another peer's connection.
type hub struct {
	remoteable.Referenceable
	srv *Server
}

func (h *hub) Other(ctx context.Context, name string) (*Ref, error) {
	for _, c := range h.srv.Conns() {
		if c.Peer().Name == name {
			return c.Root(), nil
		}
	}
	return nil, nil
}

func TestRootsTravelUncounted(t *testing.T) {
	leakcheck.Check(t)
	h := &hub{}
	srv, addr := startServer(t, h)
	h.srv = srv
	ctx := testkit.Ctx(t, 30*time.Second)

	// A dialer passes its own root as an argument: the receiver gets the
	// root reference, which is never counted, so collecting it later sends
	// no release and the connection stays up.
	l := &listener{got: make(chan string, 1)}
	dial(t, addr, WithName("a"), WithRoot(l))
	svc := newService()
	srv2, addr2 := startServer(t, svc)
	b := dial(t, addr2, WithRoot(l))
	got, err := Call[string](ctx, b.Root(), "Callback", l, "hi")
	require.NoError(t, err)
	assert.Equal(t, "ack:hi", got)
	assert.Equal(t, "hi", <-l.got)
	assert.Equal(t, 0, serverConn(t, srv2).Stats().Imports, "a root reference is not counted")
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, b.Root().Call(ctx, "Nothing", nil), "still connected after the root handle was collected")
	assert.Nil(t, b.Err())

	// A hub passes one peer's root to another peer, which calls it.
	c := dial(t, addr, WithName("c"))
	other, err := Call[*Ref](ctx, c.Root(), "Other", "a")
	require.NoError(t, err)
	require.NotNil(t, other)
	got, err = Call[string](ctx, other, "Notify", "through the hub")
	require.NoError(t, err)
	assert.Equal(t, "ack:through the hub", got)
	assert.Equal(t, "through the hub", <-l.got)
}

type hidden struct{ Extra any }

type withHidden struct {
	*hidden
	Name string
}

func TestEmbeddedPointerToUnexportedStructIsAnErrorNotAPanic(t *testing.T) {
	e := getEncoder(nil)
	e.buf = cborx.AppendMap(e.buf, 2)
	e.buf = cborx.AppendText(cborx.AppendText(e.buf, "Name"), "x")
	e.buf = cborx.AppendInt(cborx.AppendText(e.buf, "Extra"), 1)
	body := append([]byte(nil), e.buf[cborx.FramePrefix:]...)
	putEncoder(e)
	var v withHidden
	d := decoder{r: cborx.NewReader(body)}
	err := d.reply(&v)
	assert.ErrorContains(t, err, "unexported struct")
}

type onlyName struct{ Name string }

func (s *service) Named(v onlyName) (string, error) { return v.Name, nil }

// TestReferencesInDroppedDataAreReleased sends references the receiver never
// turns into handles — after an argument of the wrong type, in a field the
// receiver's type does not have, in a result that does not fit the reply —
// and checks that every one of them is given back.
func TestReferencesInDroppedDataAreReleased(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sc := serverConn(t, srv)

	// A wrong argument before a reference: the call fails, the reference
	// the client exported is released.
	err := c.Root().Call(ctx, "Callback", nil, 42, &listener{}, "x")
	require.ErrorIs(t, err, ErrBadArguments)
	testkit.Eventually(t, "export released after a rejected call", func() bool { return c.Stats().Exports == 0 })

	// A reference in a field the parameter type does not have.
	name, err := Call[string](ctx, c.Root(), "Named", map[string]any{"Name": "n", "Unknown": &counter{}})
	require.NoError(t, err)
	assert.Equal(t, "n", name)
	testkit.Eventually(t, "export released after an unknown field", func() bool { return c.Stats().Exports == 0 })

	// A result that does not fit the reply.
	_, err = Call[int](ctx, c.Root(), "NewCounter")
	require.ErrorIs(t, err, ErrBadReply)
	testkit.Eventually(t, "server export released after a bad reply", func() bool { return sc.Stats().Exports == 1 })
	assert.Nil(t, c.Err())
}

// TestHomecomingKeepsItsHandleUntilSent checks that a message sending one
// of the peer's objects home keeps the handle it was written from
// reachable until the message is sent (its encoder put back). Collected
// before, the handle's cleanup would post its Release on the main stream
// ahead of the message, and the peer would find the object gone when it
// decoded it: a handler returning the caller's object home with a large
// byte string lost it so (unknown reference), once the string's copy into
// the frame (encoder.flatten, when the message is sent) came after the
// encoding and its allocation set a collection off in between.
func TestHomecomingKeepsItsHandleUntilSent(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	sc := serverConn(t, srv)

	e, id := encodeHome(ctx, t, cl) // nothing but e refers to the handle now
	func() {
		// A handle nothing refers to, to know when the cleanups ran.
		_, err := Call[*Ref](ctx, cl.Root(), "NewCounter")
		require.NoError(t, err)
	}()
	require.Equal(t, 3, sc.Stats().Exports)
	testkit.Eventually(t, "the other handle released", func() bool {
		runtime.GC()
		return sc.Stats().Exports <= 2
	})
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	cl.refs.mu.Lock()
	_, held := cl.refs.imports[id]
	cl.refs.mu.Unlock()
	assert.True(t, held, "the handle going home was released before its message was sent")
	assert.Equal(t, 2, sc.Stats().Exports, "a release overtook the message")

	putEncoder(e) // sent: the handle may go
	testkit.Eventually(t, "the handle released once its message was sent", func() bool {
		runtime.GC()
		return sc.Stats().Exports == 1
	})
}

// encodeHome writes a reference to one of c's peer's objects, going home,
// and returns the encoder and the object's id, keeping no handle.
func encodeHome(ctx context.Context, t *testing.T, c *Conn) (*encoder, uint64) {
	r, err := Call[*Ref](ctx, c.Root(), "NewCounter")
	require.NoError(t, err)
	e := getEncoder(c)
	require.NoError(t, e.any(r))
	require.True(t, e.homecoming)
	return e, r.id
}
