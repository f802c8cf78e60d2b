package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
)

// gRPC with a hand-written service description and a codec that passes raw
// bytes through (no protobuf), forced on both sides. All callers share one
// ClientConn (one HTTP/2 connection).
//
// fetchcall: Lookup returns the full method name of a second service's Echo,
// which the caller then invokes.
//
// callback: a bidirectional stream per call. The client sends the data; the
// server sends a callback request down the stream; the client answers it;
// the server sends the final result and ends the stream.

// rawCodec is a gRPC codec whose messages are *[]byte.
type rawCodec struct{}

func (rawCodec) Name() string { return "tether-bench-raw" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *[]byte:
		return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
	case []byte:
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	}
	return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
}

// Unmarshal copies the message into *v, reusing its storage when it is
// large enough (the data is freed by gRPC once this returns).
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	n := data.Len()
	if cap(*m) < n {
		*m = make([]byte, n)
	}
	*m = (*m)[:n]
	data.CopyTo(*m)
	return nil
}

const (
	grpcEcho     = "/tetherbench.Echo/Echo"
	grpcLookup   = "/tetherbench.Echo/Lookup"
	grpcCallback = "/tetherbench.Echo/Callback"
	grpcSubEcho  = "/tetherbench.Sub/Echo"
)

type grpcEchoServer interface{}

func grpcUnaryEcho(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	return &in, nil
}

func grpcUnaryLookup(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	name := []byte(grpcSubEcho)
	return &name, nil
}

// grpcCallbackHandler runs one callback exchange on a bidirectional stream.
func grpcCallbackHandler(_ any, stream grpc.ServerStream) error {
	var data []byte
	if err := stream.RecvMsg(&data); err != nil {
		return err
	}
	if err := stream.SendMsg(&data); err != nil { // the callback request
		return err
	}
	var answer []byte
	if err := stream.RecvMsg(&answer); err != nil { // the callback's answer
		return err
	}
	return stream.SendMsg(&answer) // the result
}

var grpcEchoDesc = grpc.ServiceDesc{
	ServiceName: "tetherbench.Echo",
	HandlerType: (*grpcEchoServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: grpcUnaryEcho},
		{MethodName: "Lookup", Handler: grpcUnaryLookup},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Callback", Handler: grpcCallbackHandler, ServerStreams: true, ClientStreams: true},
	},
}

var grpcSubDesc = grpc.ServiceDesc{
	ServiceName: "tetherbench.Sub",
	HandlerType: (*grpcEchoServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: grpcUnaryEcho}},
}

type grpcWorker struct{ out, name, cbReq []byte }

type grpcSys struct {
	srv  *grpc.Server
	done chan error
	cc   *grpc.ClientConn
	ws   []grpcWorker
}

func (*grpcSys) Name() string                    { return "grpc" }
func (*grpcSys) Label(kind string, n int) string { return "grpc" }

func (s *grpcSys) Start() error {
	ln, err := listen()
	if err != nil {
		return err
	}
	s.srv = grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	s.srv.RegisterService(&grpcEchoDesc, struct{}{})
	s.srv.RegisterService(&grpcSubDesc, struct{}{})
	s.done = make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	s.cc, err = grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

func (s *grpcSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	return nil
}

func (s *grpcSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := s.cc.Invoke(ctx, grpcEcho, &in, &st.out)
	return st.out, err
}

func (s *grpcSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	empty := []byte{}
	if err := s.cc.Invoke(ctx, grpcLookup, &empty, &st.name); err != nil {
		return nil, err
	}
	err := s.cc.Invoke(ctx, string(st.name), &in, &st.out)
	return st.out, err
}

func (s *grpcSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	stream, err := s.cc.NewStream(ctx, &grpcEchoDesc.Streams[0], grpcCallback)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(&in); err != nil {
		return nil, err
	}
	if err := stream.RecvMsg(&st.cbReq); err != nil { // the server calls back
		return nil, err
	}
	if err := stream.SendMsg(&st.cbReq); err != nil { // the callback answers
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	if err := stream.RecvMsg(&st.out); err != nil {
		return nil, err
	}
	// Drain to the end of the stream so that gRPC releases it.
	var extra []byte
	if err := stream.RecvMsg(&extra); err != io.EOF {
		if err == nil {
			err = errors.New("grpc: unexpected extra message")
		}
		return nil, err
	}
	return st.out, nil
}

func (s *grpcSys) Close() error {
	var errs []error
	if s.cc != nil {
		if err := s.cc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.srv != nil {
		s.srv.Stop()
		if err := <-s.done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	return errors.Join(errs...)
}
