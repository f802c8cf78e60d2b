package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	capnp "capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/rpc"
)

// Cap'n Proto RPC (capnproto.org/go/capnp/v3) over one shared connection,
// with the hand-written bindings of capnp_echo.go.
//
// fetchcall is pipelined: the caller calls echo on the promised result of
// sub without waiting for sub to return, so the two calls share one round
// trip. sub returns a new capability each time (see Sub).
//
// callback: the caller passes a Callback capability; the server's handler
// calls call.Go (so that the connection's other calls are not held up while
// it waits) and then calls the capability back.
//
// Echo handlers do not call call.Go: capnp-go then runs them one at a time
// per capability, its default.

// capnpEchoServer implements Echo on the server side. Only the bootstrap
// capability hands out sub-objects.
type capnpEchoServer struct {
	root bool
}

func (*capnpEchoServer) Echo(ctx context.Context, call Echo_echo) error {
	data, err := call.Args().Data()
	if err != nil {
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return res.SetData(data)
}

// Sub returns a new capability on every call. Returning one shared
// capability instead crashes capnp-go v3.1.0-alpha.2 when many callers
// receive and release it concurrently (a nil import-table entry in
// rpc.(*importClient).Shutdown), so each fetch gets an object of its own.
func (s *capnpEchoServer) Sub(ctx context.Context, call Echo_sub) error {
	if !s.root {
		return errors.New("no sub-object here")
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return res.SetEcho(Echo_ServerToClient(&capnpEchoServer{}))
}

func (*capnpEchoServer) Callback(ctx context.Context, call Echo_callback) error {
	call.Go() // the handler blocks on the callback: let other calls proceed
	args := call.Args()
	data, err := args.Data()
	if err != nil {
		return err
	}
	f, release := args.Cb().Call(ctx, func(p Callback_call_Params) error { return p.SetData(data) })
	defer release()
	r, err := f.Struct()
	if err != nil {
		return err
	}
	answer, err := r.Data()
	if err != nil {
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return res.SetData(answer)
}

// capnpCallbackServer is the client-side Callback.
type capnpCallbackServer struct{}

func (capnpCallbackServer) Call(ctx context.Context, call Callback_call) error {
	data, err := call.Args().Data()
	if err != nil {
		return err
	}
	res, err := call.AllocResults()
	if err != nil {
		return err
	}
	return res.SetData(data)
}

type capnpWorker struct {
	out   []byte
	cb    Callback
	hasCb bool
}

type capnpSys struct {
	ln    net.Listener
	conns connSet
	conn  *rpc.Conn
	echo  Echo
	ws    []capnpWorker
}

func (*capnpSys) Name() string { return "capnp" }

func (*capnpSys) Label(kind string, n int) string {
	if kind == "fetchcall" {
		return "capnp (pipelined)"
	}
	return "capnp"
}

func (s *capnpSys) Start() error {
	ln, err := listen()
	if err != nil {
		return err
	}
	s.ln = ln
	s.conns.serve(ln, func(nc net.Conn) {
		boot := Echo_ServerToClient(&capnpEchoServer{root: true})
		c := rpc.NewConn(rpc.NewStreamTransport(nc), &rpc.Options{BootstrapClient: capnp.Client(boot)})
		<-c.Done()
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	s.conn = rpc.NewConn(rpc.NewStreamTransport(nc), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.echo = Echo(s.conn.Bootstrap(ctx))
	if err := capnp.Client(s.echo).Resolve(ctx); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

func (s *capnpSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	for i := range s.ws {
		if !s.ws[i].hasCb {
			s.ws[i].cb = Callback_ServerToClient(capnpCallbackServer{})
			s.ws[i].hasCb = true
		}
	}
	return nil
}

func (s *capnpSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	f, release := s.echo.Echo(ctx, func(p Echo_echo_Params) error { return p.SetData(in) })
	defer release()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	data, err := r.Data()
	st.out = append(st.out[:0], data...)
	return st.out, err
}

func (s *capnpSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	sub, releaseSub := s.echo.Sub(ctx, nil)
	defer releaseSub()
	f, release := sub.Echo().Echo(ctx, func(p Echo_echo_Params) error { return p.SetData(in) })
	defer release()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	data, err := r.Data()
	st.out = append(st.out[:0], data...)
	return st.out, err
}

func (s *capnpSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	f, release := s.echo.Callback(ctx, func(p Echo_callback_Params) error {
		if err := p.SetCb(st.cb.AddRef()); err != nil {
			return err
		}
		return p.SetData(in)
	})
	defer release()
	r, err := f.Struct()
	if err != nil {
		return nil, err
	}
	data, err := r.Data()
	st.out = append(st.out[:0], data...)
	return st.out, err
}

func (s *capnpSys) Close() error {
	var errs []error
	for i := range s.ws {
		if s.ws[i].hasCb {
			s.ws[i].cb.Release()
			s.ws[i].hasCb = false
		}
	}
	if s.conn != nil {
		s.echo.Release()
		if err := s.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if s.ln != nil {
		s.ln.Close()
		s.conns.close()
	}
	return errors.Join(errs...)
}
