package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// mdProbe is a handler that shows what its calls arrived with.
type mdProbe struct{ runs atomic.Int32 }

// Metadata returns the metadata the call arrived with, or nil.
func (p *mdProbe) Metadata(ctx context.Context) (map[string]string, error) {
	p.runs.Add(1)
	md, _ := IncomingMetadata(ctx)
	return md, nil
}

// Missing fails with a code of its own.
func (p *mdProbe) Missing() error {
	p.runs.Add(1)
	return NewError(NotFound, errors.New("probe: no such thing"))
}

// Seen returns the value the named context key holds, for interceptors
// that pass the handler a context of their own.
func (p *mdProbe) Seen(ctx context.Context) (string, error) {
	s, _ := ctx.Value(probeKey{}).(string)
	return s, nil
}

// Quiet runs and counts.
func (p *mdProbe) Quiet() error {
	p.runs.Add(1)
	return nil
}

// probeKey is a context key a test interceptor sets.
type probeKey struct{}

func TestMetadataTravelsWithACall(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &mdProbe{})
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 10*time.Second)

	var got map[string]string
	require.NoError(t, c.Root().Call(ctx, "Metadata", &got))
	assert.Nil(t, got, "a call without metadata arrives without any")

	mctx := AppendToOutgoing(ctx, "request-id", "r-1", "tenant", "acme")
	mctx = AppendToOutgoing(mctx, "tenant", "globex")
	require.NoError(t, c.Root().Call(mctx, "Metadata", &got))
	assert.Equal(t, map[string]string{"request-id": "r-1", "tenant": "globex"}, got, "a key given again takes the later value")

	md := Metadata{"x": "1"}
	mctx = WithOutgoingMetadata(mctx, md)
	md["y"] = "2" // WithOutgoingMetadata copied md
	got = nil     // a reply map is filled, not replaced
	require.NoError(t, c.Root().Call(mctx, "Metadata", &got))
	assert.Equal(t, map[string]string{"x": "1"}, got, "WithOutgoingMetadata replaces what the context had")
	out, ok := OutgoingMetadata(mctx)
	assert.True(t, ok)
	assert.Equal(t, Metadata{"x": "1"}, out)
	_, ok = IncomingMetadata(ctx)
	assert.False(t, ok, "a context that belongs to no call has no incoming metadata")
	odd := []string{"key-without-value"}
	assert.Panics(t, func() { AppendToOutgoing(ctx, odd...) })
}

func TestMetadataBreakingItsBoundsIsRefusedBeforeSending(t *testing.T) {
	leakcheck.Check(t)
	probe := &mdProbe{}
	_, addr := startServer(t, probe)
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 10*time.Second)
	many := Metadata{}
	for i := range MaxMetadataEntries + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for name, md := range map[string]Metadata{
		"upper-case key": {"Request-ID": "1"},
		"empty key":      {"": "1"},
		"space in key":   {"a b": "1"},
		"long key":       {strings.Repeat("k", MaxMetadataKey+1): "1"},
		"too many":       many,
		"too many bytes": {"big": strings.Repeat("v", MaxMetadataBytes)},
	} {
		err := c.Root().Call(WithOutgoingMetadata(ctx, md), "Metadata", nil)
		require.ErrorIs(t, err, ErrInvalidMetadata, name)
		assert.Equal(t, InvalidArgument, CodeOf(err), name)
	}
	assert.Zero(t, probe.runs.Load(), "nothing was sent")
	require.NoError(t, c.Root().Call(ctx, "Metadata", nil), "the connection serves on")
}

func TestMetadataOverItsBoundsFromAPeerIsAnsweredAndTheServerServesOn(t *testing.T) {
	leakcheck.Check(t)
	probe := &mdProbe{}
	_, addr := startServer(t, probe)
	p := rawConnect(t, addr, true)
	many := Metadata{}
	for i := range MaxMetadataEntries + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for i, md := range []Metadata{many, {"Upper": "v"}, {"big": strings.Repeat("v", MaxMetadataBytes)}} {
		p.sendMsg(func(e *encoder) {
			e.buf = appendCallHeadExt(e.buf, uint64(i+1), 0, "Metadata", 0, 0)
			e.buf = cborx.AppendUint(cborx.AppendMap(e.buf, 1), extMetadata)
			e.buf = appendMetadata(e.buf, md) // no check: a peer that does not check
		})
		typ, carried, err := p.next()
		require.NoError(t, err)
		require.Equal(t, uint64(msgFail), typ)
		require.ErrorIs(t, carried, ErrInvalidMetadata)
	}
	p.call(9, 0, "Metadata")
	typ, _, err := p.next()
	require.NoError(t, err)
	assert.Equal(t, uint64(msgReturn), typ, "the connection serves on")
	assert.EqualValues(t, 1, probe.runs.Load(), "only the good call ran")

	// Metadata that is not a map of text to text is a protocol violation.
	p.sendMsg(func(e *encoder) {
		e.buf = appendCallHeadExt(e.buf, 10, 0, "Metadata", 0, 0)
		e.buf = cborx.AppendUint(cborx.AppendMap(e.buf, 1), extMetadata)
		e.buf = cborx.AppendUint(cborx.AppendMap(e.buf, 1), 1)
		e.buf = cborx.AppendText(e.buf, "v")
	})
	require.ErrorIs(t, p.closedWith(), ErrProtocol)

	// Other peers are served meanwhile.
	c := dial(t, addr)
	require.NoError(t, c.Root().Call(testkit.Ctx(t, 10*time.Second), "Metadata", nil))
}

// recorder keeps what interceptors saw, in order.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

// add records one line.
func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// take returns the lines recorded so far and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	r.lines = nil
	return l
}

// tracing returns an interceptor that records its name, the call and the
// code of its result around next.
func (r *recorder) tracing(name string) Interceptor {
	return func(ctx context.Context, call *CallInfo, next Invoker) error {
		r.add("%s> %s %s", name, call.Kind, call.Method)
		err := next(ctx, call)
		r.add("%s< %s", name, CodeOf(err))
		return err
	}
}

func TestInterceptorsRunInOrderAndSeeTheCall(t *testing.T) {
	leakcheck.Check(t)
	var rec recorder
	var info CallInfo
	var srvMD Metadata
	capture := func(ctx context.Context, call *CallInfo, next Invoker) error {
		info = *call
		srvMD, _ = IncomingMetadata(ctx)
		return next(ctx, call)
	}
	addMD := func(ctx context.Context, call *CallInfo, next Invoker) error {
		return next(AppendToOutgoing(ctx, "added-by", "client"), call)
	}
	_, addr := startServer(t, &mdProbe{}, WithName("origin"),
		WithServerInterceptors(rec.tracing("s1"), rec.tracing("s2")), WithServerInterceptors(capture))
	c := dial(t, addr, WithName("agent"), WithClientInterceptors(rec.tracing("c1")), WithClientInterceptors(rec.tracing("c2"), addMD))
	ctx := testkit.Ctx(t, 10*time.Second)

	var got map[string]string
	require.NoError(t, c.Root().Call(AppendToOutgoing(ctx, "request-id", "r-7"), "Metadata", &got))
	assert.Equal(t, map[string]string{"request-id": "r-7", "added-by": "client"}, got, "a client interceptor adds metadata")
	assert.Equal(t, Metadata(got), srvMD, "a server interceptor reads the metadata")
	assert.Equal(t, []string{"c1> method Metadata", "c2> method Metadata", "s1> method Metadata", "s2> method Metadata",
		"s2< ok", "s1< ok", "c2< ok", "c1< ok"}, rec.take(), "the first interceptor given is the outermost")
	assert.Equal(t, CallInfo{Kind: CallMethod, Target: Target{ID: 0, Type: "*broker.mdProbe"}, Method: "Metadata",
		Peer: info.Peer, Client: false}, info)
	assert.Equal(t, "agent", info.Peer.Name, "the server interceptor sees the caller")

	err := c.Root().Call(ctx, "Missing", nil)
	require.Error(t, err)
	assert.Equal(t, []string{"c1> method Missing", "c2> method Missing", "s1> method Missing", "s2> method Missing",
		"s2< not_found", "s1< not_found", "c2< not_found", "c1< not_found"}, rec.take(), "both sides see the code")

	err = c.Root().Call(ctx, "Nope", nil)
	require.ErrorIs(t, err, ErrUnknownMethod)
	assert.Equal(t, []string{"c1> method Nope", "c2> method Nope", "s1> method Nope", "s2> method Nope",
		"s2< unimplemented", "s1< unimplemented", "c2< unimplemented", "c1< unimplemented"}, rec.take(),
		"a call refused before a handler could run goes through the interceptors too")
	assert.Equal(t, "*broker.mdProbe", info.Target.Type)
	assert.Equal(t, "agent", info.Peer.Name)
}

func TestInterceptorsOnADialedConnectionSeeCallbacks(t *testing.T) {
	leakcheck.Check(t)
	var rec recorder
	_, addr := startServer(t, newService(), WithClientInterceptors(rec.tracing("srv-out")))
	c := dial(t, addr, WithServerInterceptors(rec.tracing("cli-in")))
	ctx := testkit.Ctx(t, 10*time.Second)
	var got string
	require.NoError(t, c.Root().Call(ctx, "Callback", &got, &listener{}, "hi"))
	assert.Equal(t, []string{"srv-out> method Notify", "cli-in> method Notify", "cli-in< ok", "srv-out< ok"}, rec.take())
}

func TestInterceptorPanicFailsThatCallOnly(t *testing.T) {
	leakcheck.Check(t)
	panicky := func(ctx context.Context, call *CallInfo, next Invoker) error {
		if md, _ := IncomingMetadata(ctx); md["panic"] == "server" {
			panic("server interceptor broke")
		}
		return next(ctx, call)
	}
	clientPanicky := func(ctx context.Context, call *CallInfo, next Invoker) error {
		if md, _ := OutgoingMetadata(ctx); md["panic"] == "client" {
			panic("client interceptor broke")
		}
		return next(ctx, call)
	}
	probe := &mdProbe{}
	_, addr := startServer(t, probe, WithServerInterceptors(panicky))
	c := dial(t, addr, WithClientInterceptors(clientPanicky))
	ctx := testkit.Ctx(t, 10*time.Second)

	err := c.Root().Call(AppendToOutgoing(ctx, "panic", "server"), "Metadata", nil)
	require.ErrorIs(t, err, ErrPanic)
	assert.Equal(t, Internal, CodeOf(err))
	assert.Contains(t, err.Error(), "server interceptor broke")
	err = c.Root().Call(AppendToOutgoing(ctx, "panic", "client"), "Metadata", nil)
	require.ErrorIs(t, err, ErrPanic)
	assert.Equal(t, Internal, CodeOf(err))
	assert.Zero(t, probe.runs.Load(), "no handler ran")
	require.NoError(t, c.Root().Call(ctx, "Metadata", nil), "the connection serves on")
}

func TestInterceptorRefusesACall(t *testing.T) {
	leakcheck.Check(t)
	errRefused := NewError(PermissionDenied, errors.New("probe: refused by the interceptor"))
	refuse := func(method string) Interceptor {
		return func(ctx context.Context, call *CallInfo, next Invoker) error {
			if call.Method == method {
				return errRefused
			}
			return next(ctx, call)
		}
	}
	silent := func(ctx context.Context, call *CallInfo, next Invoker) error {
		if call.Method == "Quiet" {
			return nil // neither next nor an error: a mistake, reported
		}
		return next(context.WithValue(ctx, probeKey{}, "from the interceptor"), call)
	}
	probe := &mdProbe{}
	_, addr := startServer(t, probe, WithServerInterceptors(refuse("Metadata"), silent))
	c := dial(t, addr, WithClientInterceptors(refuse("Missing")))
	ctx := testkit.Ctx(t, 10*time.Second)

	err := c.Root().Call(ctx, "Metadata", nil)
	require.Error(t, err)
	assert.Equal(t, PermissionDenied, CodeOf(err), "the caller gets the refusal's code")
	assert.Contains(t, err.Error(), "refused by the interceptor")
	err = c.Root().Call(ctx, "Missing", nil)
	require.ErrorIs(t, err, errRefused, "a client interceptor's refusal is the call's error as it is")
	assert.Zero(t, probe.runs.Load(), "the handlers never ran")

	err = c.Root().Call(ctx, "Quiet", nil)
	require.ErrorIs(t, err, ErrPanic)
	assert.Equal(t, Internal, CodeOf(err))
	assert.Contains(t, err.Error(), "did not call next")
	assert.Zero(t, probe.runs.Load(), "the handler never ran")

	var seen string
	require.NoError(t, c.Root().Call(ctx, "Seen", &seen), "not refused: the connection serves on")
	assert.Equal(t, "from the interceptor", seen, "the handler runs with the context the interceptor passed on")
}

func TestNilInterceptorIsAnInvalidOption(t *testing.T) {
	err := VerifyDialOptions(WithClientInterceptors(nil))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.Contains(t, err.Error(), "WithClientInterceptors")
}
