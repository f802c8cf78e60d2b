package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"sync"
)

// net/rpc (gob) from the standard library. All callers share one client
// connection; net/rpc multiplexes calls on it and runs each request in a
// goroutine of its own on the server.
//
// fetchcall: net/rpc has no references, so Lookup returns the name of a
// second registered service and the caller then calls "<name>.Echo".
//
// callback: net/rpc cannot call the client over the client's connection.
// The client runs a callback service on a listener of its own; the first
// callback request carries its address, the server dials it once, and every
// later callback travels over that reverse connection.

// NetRPCEcho is the service registered as "Echo".
type NetRPCEcho struct {
	mu      sync.Mutex
	reverse *rpc.Client // to the client's callback service, dialled once
}

// CallbackArgs is a callback request: where to call back, and the data.
type CallbackArgs struct {
	Addr string
	Data []byte
}

func (*NetRPCEcho) Echo(in []byte, out *[]byte) error { *out = in; return nil }

// Lookup returns the name of the service fetchcall calls next.
func (*NetRPCEcho) Lookup(_ int, name *string) error { *name = "Sub"; return nil }

// Callback calls the client's callback service over the reverse connection.
func (e *NetRPCEcho) Callback(args CallbackArgs, out *[]byte) error {
	c, err := e.reverseClient(args.Addr)
	if err != nil {
		return err
	}
	return c.Call("Callback.Call", args.Data, out)
}

func (e *NetRPCEcho) reverseClient(addr string) (*rpc.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reverse != nil {
		return e.reverse, nil
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial back: %w", err)
	}
	e.reverse = rpc.NewClient(nc)
	return e.reverse, nil
}

func (e *NetRPCEcho) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.reverse != nil {
		e.reverse.Close()
		e.reverse = nil
	}
}

// NetRPCSub is the service fetchcall reaches by the name Lookup returned.
type NetRPCSub struct{}

func (*NetRPCSub) Echo(in []byte, out *[]byte) error { *out = in; return nil }

// NetRPCCallback is the client-side callback service.
type NetRPCCallback struct{}

func (*NetRPCCallback) Call(in []byte, out *[]byte) error { *out = in; return nil }

type netrpcWorker struct{ out []byte }

type netrpcSys struct {
	echo     *NetRPCEcho
	ln, cbLn net.Listener
	conns    connSet // the server's and the callback service's
	client   *rpc.Client
	cbAddr   string
	ws       []netrpcWorker
}

func (*netrpcSys) Name() string                    { return "net/rpc" }
func (*netrpcSys) Label(kind string, n int) string { return "net/rpc" }

func (s *netrpcSys) Start() error {
	srv := rpc.NewServer()
	s.echo = &NetRPCEcho{}
	if err := srv.RegisterName("Echo", s.echo); err != nil {
		return err
	}
	if err := srv.RegisterName("Sub", &NetRPCSub{}); err != nil {
		return err
	}
	ln, err := listen()
	if err != nil {
		return err
	}
	s.ln = ln
	s.conns.serve(ln, func(c net.Conn) { srv.ServeConn(c) })

	// The client's callback service, which the server dials back.
	cbSrv := rpc.NewServer()
	if err := cbSrv.RegisterName("Callback", &NetRPCCallback{}); err != nil {
		return err
	}
	cbLn, err := listen()
	if err != nil {
		return err
	}
	s.cbLn = cbLn
	s.cbAddr = cbLn.Addr().String()
	s.conns.serve(cbLn, func(c net.Conn) { cbSrv.ServeConn(c) })

	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	s.client = rpc.NewClient(nc)
	return nil
}

func (s *netrpcSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	return nil
}

// call makes a net/rpc call that gives up when ctx ends (net/rpc itself
// takes no context).
func (s *netrpcSys) call(ctx context.Context, method string, args, reply any) error {
	c := s.client.Go(method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-c.Done:
		return c.Error
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *netrpcSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := s.call(ctx, "Echo.Echo", in, &st.out)
	return st.out, err
}

func (s *netrpcSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	var name string
	if err := s.call(ctx, "Echo.Lookup", 0, &name); err != nil {
		return nil, err
	}
	err := s.call(ctx, name+".Echo", in, &st.out)
	return st.out, err
}

func (s *netrpcSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := s.call(ctx, "Echo.Callback", CallbackArgs{Addr: s.cbAddr, Data: in}, &st.out)
	return st.out, err
}

func (s *netrpcSys) Close() error {
	var errs []error
	if s.client != nil {
		if err := s.client.Close(); err != nil && !errors.Is(err, rpc.ErrShutdown) {
			errs = append(errs, err)
		}
	}
	if s.echo != nil {
		s.echo.close()
	}
	for _, l := range []net.Listener{s.ln, s.cbLn} {
		if l != nil {
			l.Close()
		}
	}
	s.conns.close()
	return errors.Join(errs...)
}
