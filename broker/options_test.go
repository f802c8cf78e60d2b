package broker

import (
	"context"
	"crypto/tls"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestOptionsForTheOtherSideAreRefused checks that an option meant for one
// side is an error on the other, naming the option, never ignored.
func TestOptionsForTheOtherSideAreRefused(t *testing.T) {
	leakcheck.Check(t)
	srv := NewServer(newService(), WithRoot(newService()))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	err = srv.Serve(ln)
	require.Error(t, err)
	assert.ErrorContains(t, err, "WithRoot applies to a dialer")
	assert.NoError(t, VerifyDialOptions(WithRoot(newService()), WithName("x")))
}

// TestWithTLSOnAServerServesTLS checks that a server given WithTLS speaks
// TLS over a plain listener instead of serving plaintext, and that a
// plaintext dialer is refused.
func TestWithTLSOnAServerServesTLS(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, cliCfg := tlsConfigs(t)
	_, addr := startServer(t, newService(), WithTLS(srvCfg))
	c := dial(t, addr, WithTLS(cliCfg))
	require.NotNil(t, c.Peer().TLS, "the connection runs TLS")
	var s string
	require.NoError(t, c.Root().Call(testkit.Ctx(t, 30*time.Second), "Concat", &s, "a", "b"))
	assert.Equal(t, "ab", s)

	ctx := testkit.Ctx(t, 30*time.Second)
	_, err := Dial(ctx, "tcp", addr, WithHandshakeTimeout(2e9))
	assert.Error(t, err, "a plaintext dialer does not get through")

	noCert := NewServer(newService(), WithTLS(&tls.Config{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	assert.ErrorContains(t, noCert.Serve(ln), "needs a certificate")
}

// TestEveryOptionOnTheWrongSideIsRefused checks every option of the
// package, found by reading its source so that a new option cannot be
// left out: one for a server only is refused by Dial, NewConn and
// VerifyDialOptions; one for a dialer only is refused by Serve, which
// closes its listener at once, and by ServeConn; one for both sides is
// accepted by both. Each refusal matches ErrInvalidOption and names the
// option.
func TestEveryOptionOnTheWrongSideIsRefused(t *testing.T) {
	leakcheck.Check(t)
	srvTLS, cliTLS := tlsConfigs(t)
	auth := AuthenticatorFunc(func(context.Context, Credentials) (remoteable.Identity, error) {
		return remoteable.Identity{}, nil
	})
	realm := Realm(func(context.Context, remoteable.Peer) (any, error) { return newService(), nil })
	noop := func(ctx context.Context, call *CallInfo, next Invoker) error { return next(ctx, call) }
	type sides struct{ dial, server Option }
	options := map[string]struct {
		only side
		opt  sides
	}{
		"WithName":               {bothSides, sides{WithName("a"), WithName("a")}},
		"WithToken":              {bothSides, sides{WithToken("t"), WithToken("t")}},
		"WithTLS":                {bothSides, sides{WithTLS(cliTLS), WithTLS(srvTLS)}},
		"WithHandshakeTimeout":   {bothSides, sides{WithHandshakeTimeout(time.Second), WithHandshakeTimeout(time.Second)}},
		"WithDeadPeerTimeout":    {bothSides, sides{WithDeadPeerTimeout(time.Second), WithDeadPeerTimeout(time.Second)}},
		"WithWriteTimeout":       {bothSides, sides{WithWriteTimeout(time.Second), WithWriteTimeout(time.Second)}},
		"WithMaxMessageSize":     {bothSides, sides{WithMaxMessageSize(1 << 20), WithMaxMessageSize(1 << 20)}},
		"WithMaxConcurrentCalls": {bothSides, sides{WithMaxConcurrentCalls(8), WithMaxConcurrentCalls(8)}},
		"WithMaxExports":         {bothSides, sides{WithMaxExports(8), WithMaxExports(8)}},
		"WithMaxSubscriptions":   {bothSides, sides{WithMaxSubscriptions(8), WithMaxSubscriptions(8)}},
		"WithTracebacks":         {bothSides, sides{WithTracebacks(true), WithTracebacks(true)}},
		"WithLogger":             {bothSides, sides{WithLogger(slog.Default()), WithLogger(slog.Default())}},
		"WithHandshakeLimits":    {serverSide, sides{WithHandshakeLimits(4, 2), WithHandshakeLimits(4, 2)}},
		"WithAuthenticator":      {serverSide, sides{WithAuthenticator(auth), WithAuthenticator(auth)}},
		"WithRealm":              {serverSide, sides{WithRealm(realm), WithRealm(realm)}},
		"WithRoot":               {dialSide, sides{WithRoot(newService()), WithRoot(newService())}},
		"WithClientInterceptors": {bothSides, sides{WithClientInterceptors(noop), WithClientInterceptors(noop)}},
		"WithServerInterceptors": {bothSides, sides{WithServerInterceptors(noop), WithServerInterceptors(noop)}},
	}
	assert.ElementsMatch(t, optionConstructors(t), slices.Collect(maps.Keys(options)),
		"every option of the package is in the table")

	for name, tc := range options {
		t.Run(name, func(t *testing.T) {
			root := any(newService())
			if name == "WithRealm" {
				root = nil
			}
			dialErr := VerifyDialOptions(tc.opt.dial)
			srv := NewServer(root, tc.opt.server)
			defer srv.Close()
			if tc.only == serverSide {
				_, dErr := Dial(testkit.Ctx(t, 30*time.Second), "tcp", "127.0.0.1:1", tc.opt.dial)
				a, b := net.Pipe()
				defer b.Close()
				_, cErr := NewConn(testkit.Ctx(t, 30*time.Second), a, tc.opt.dial)
				want := "tether: " + name + " applies to a server (NewServer), not to a dialer (Dial, NewConn, remote.Connect): remove it here"
				for _, err := range []error{dialErr, dErr, cErr} {
					require.ErrorIs(t, err, ErrInvalidOption)
					assert.EqualError(t, err, want)
				}
			} else {
				assert.NoError(t, dialErr)
			}
			if tc.only == dialSide {
				want := "tether: " + name + " applies to a dialer (Dial, NewConn, remote.Connect), not to a server (NewServer): remove it here"
				ln := listen(t)
				err := srv.Serve(ln)
				require.ErrorIs(t, err, ErrInvalidOption)
				assert.EqualError(t, err, want)
				_, err = ln.Accept()
				assert.ErrorIs(t, err, net.ErrClosed, "Serve closed its listener")
				_, err = net.Dial("tcp", ln.Addr().String())
				assert.ErrorIs(t, err, syscall.ECONNREFUSED, "a dialer is refused at once")
				c, d := net.Pipe()
				defer d.Close()
				_, err = srv.ServeConn(testkit.Ctx(t, 30*time.Second), c)
				assert.ErrorIs(t, err, ErrInvalidOption)
			} else {
				assert.NoError(t, srv.err)
			}
		})
	}
}

// optionConstructors returns the names of the package's exported functions
// that return an Option, read from its source.
func optionConstructors(t *testing.T) []string {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	require.NoError(t, err)
	var names []string
	for _, f := range pkgs["broker"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !fn.Name.IsExported() || fn.Type.Results == nil || len(fn.Type.Results.List) != 1 {
				continue
			}
			if id, ok := fn.Type.Results.List[0].Type.(*ast.Ident); ok && id.Name == "Option" {
				names = append(names, fn.Name.Name)
			}
		}
	}
	require.NotEmpty(t, names)
	return names
}

// TestInvalidOptionValuesAreRefused checks that an invalid value is an
// error matching ErrInvalidOption that names the option, and that Serve
// closes its listener for it.
func TestInvalidOptionValuesAreRefused(t *testing.T) {
	leakcheck.Check(t)
	err := VerifyDialOptions(WithWriteTimeout(-time.Second))
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.EqualError(t, err, "tether: WithWriteTimeout: negative option value: give a positive value, or 0 for the default")
	ln := listen(t)
	srv := NewServer(newService(), WithHandshakeLimits(-1, 0))
	err = srv.Serve(ln)
	require.ErrorIs(t, err, ErrInvalidOption)
	assert.EqualError(t, err, "tether: WithHandshakeLimits: negative option value: give a positive value, or 0 for the default")
	_, err = ln.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Serve closed its listener")
	assert.ErrorIs(t, NewServer(newService(), WithRealm(func(context.Context, remoteable.Peer) (any, error) { return nil, nil })).Serve(listen(t)), ErrInvalidOption)
	assert.ErrorIs(t, NewServer(nil).Serve(listen(t)), ErrNotCallable)
}
