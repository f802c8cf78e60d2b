package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"storj.io/drpc"
	"storj.io/drpc/drpcconn"
	"storj.io/drpc/drpcmux"
	"storj.io/drpc/drpcserver"
)

// drpc with a hand-written description and an encoding that passes raw
// bytes through. A drpc connection carries one call at a time, so each
// concurrent caller gets a connection of its own: the row says how many.
//
// fetchcall: Lookup returns the rpc name of a second method, which the
// caller then invokes.
//
// callback: a bidirectional stream per call, as for gRPC.

// drpcRaw is a drpc encoding whose messages are *[]byte.
type drpcRaw struct{}

func (drpcRaw) Marshal(msg drpc.Message) ([]byte, error) {
	m, ok := msg.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("drpcRaw: cannot marshal %T", msg)
	}
	return *m, nil
}

// Unmarshal copies buf into the message, reusing its storage when it can.
func (drpcRaw) Unmarshal(buf []byte, msg drpc.Message) error {
	m, ok := msg.(*[]byte)
	if !ok {
		return fmt.Errorf("drpcRaw: cannot unmarshal into %T", msg)
	}
	*m = append((*m)[:0], buf...)
	return nil
}

const (
	drpcEcho     = "/tetherbench.Echo/Echo"
	drpcLookup   = "/tetherbench.Echo/Lookup"
	drpcCallback = "/tetherbench.Echo/Callback"
	drpcSubEcho  = "/tetherbench.Sub/Echo"
)

// drpcServer implements the methods; the description below dispatches to it.
type drpcServer struct{}

func (*drpcServer) Echo(ctx context.Context, in *[]byte) (*[]byte, error) { return in, nil }

func (*drpcServer) Lookup(ctx context.Context, _ *[]byte) (*[]byte, error) {
	name := []byte(drpcSubEcho)
	return &name, nil
}

// Callback runs one callback exchange on a bidirectional stream.
func (*drpcServer) Callback(stream drpc.Stream) error {
	var data, answer []byte
	if err := stream.MsgRecv(&data, drpcRaw{}); err != nil {
		return err
	}
	if err := stream.MsgSend(&data, drpcRaw{}); err != nil { // the callback request
		return err
	}
	if err := stream.MsgRecv(&answer, drpcRaw{}); err != nil { // the callback's answer
		return err
	}
	return stream.MsgSend(&answer, drpcRaw{}) // the result
}

// drpcDesc is the hand-written equivalent of a generated drpc description.
type drpcDesc struct{}

func (drpcDesc) NumMethods() int { return 4 }

func (drpcDesc) Method(n int) (string, drpc.Encoding, drpc.Receiver, any, bool) {
	unary := func(f func(*drpcServer, context.Context, *[]byte) (*[]byte, error)) drpc.Receiver {
		return func(srv any, ctx context.Context, in1, _ any) (drpc.Message, error) {
			return f(srv.(*drpcServer), ctx, in1.(*[]byte))
		}
	}
	switch n {
	case 0:
		return drpcEcho, drpcRaw{}, unary((*drpcServer).Echo), (*drpcServer).Echo, true
	case 1:
		return drpcLookup, drpcRaw{}, unary((*drpcServer).Lookup), (*drpcServer).Lookup, true
	case 2:
		return drpcSubEcho, drpcRaw{}, unary((*drpcServer).Echo), (*drpcServer).Echo, true
	case 3:
		return drpcCallback, drpcRaw{},
			func(srv any, ctx context.Context, in1, _ any) (drpc.Message, error) {
				return nil, srv.(*drpcServer).Callback(in1.(drpc.Stream))
			}, (*drpcServer).Callback, true
	}
	return "", nil, nil, nil, false
}

type drpcWorker struct {
	conn           *drpcconn.Conn
	out, name, cbq []byte
}

type drpcSys struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	ws     []drpcWorker
}

func (*drpcSys) Name() string { return "drpc" }

func (*drpcSys) Label(kind string, n int) string {
	if n == 1 {
		return "drpc (1 conn)"
	}
	return fmt.Sprintf("drpc (%d conns)", n)
}

func (s *drpcSys) Start() error {
	mux := drpcmux.New()
	if err := mux.Register(&drpcServer{}, drpcDesc{}); err != nil {
		return err
	}
	ln, err := listen()
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	srv := drpcserver.New(mux)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan error, 1)
	go func() { s.done <- srv.Serve(ctx, ln) }()
	return nil
}

// Prepare opens one connection per caller.
func (s *drpcSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	for i := range s.ws {
		if s.ws[i].conn != nil {
			continue
		}
		nc, err := net.Dial("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		s.ws[i].conn = drpcconn.New(nc)
	}
	return nil
}

func (s *drpcSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := st.conn.Invoke(ctx, drpcEcho, drpcRaw{}, &in, &st.out)
	return st.out, err
}

func (s *drpcSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	empty := []byte{}
	if err := st.conn.Invoke(ctx, drpcLookup, drpcRaw{}, &empty, &st.name); err != nil {
		return nil, err
	}
	err := st.conn.Invoke(ctx, string(st.name), drpcRaw{}, &in, &st.out)
	return st.out, err
}

func (s *drpcSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	stream, err := st.conn.NewStream(ctx, drpcCallback, drpcRaw{})
	if err != nil {
		return nil, err
	}
	err = func() error {
		if err := stream.MsgSend(&in, drpcRaw{}); err != nil {
			return err
		}
		if err := stream.MsgRecv(&st.cbq, drpcRaw{}); err != nil { // the server calls back
			return err
		}
		if err := stream.MsgSend(&st.cbq, drpcRaw{}); err != nil { // the callback answers
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		return stream.MsgRecv(&st.out, drpcRaw{})
	}()
	if cerr := stream.Close(); err == nil {
		err = cerr
	}
	return st.out, err
}

func (s *drpcSys) Close() error {
	var errs []error
	for i := range s.ws {
		if c := s.ws[i].conn; c != nil {
			c.Close()
			<-c.Closed()
		}
	}
	if s.cancel != nil {
		s.cancel()
		if err := <-s.done; err != nil {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	return errors.Join(errs...)
}
