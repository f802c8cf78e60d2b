package main

// Cap'n Proto bindings for echo.capnp, written by hand in the shape that
// capnpc-go gives generated code: a client type per interface with one
// method per schema method, a _Server interface with its server.Method
// table, and a struct type per parameter and result list with accessors.

import (
	"context"

	capnp "capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/server"
)

const (
	Echo_TypeID     = 0xe8a1c4d7f2b35a01
	Callback_TypeID = 0xe8a1c4d7f2b35a02
)

var (
	echoMethodEcho = capnp.Method{
		InterfaceID: Echo_TypeID, MethodID: 0,
		InterfaceName: "echo.capnp:Echo", MethodName: "echo",
	}
	echoMethodSub = capnp.Method{
		InterfaceID: Echo_TypeID, MethodID: 1,
		InterfaceName: "echo.capnp:Echo", MethodName: "sub",
	}
	echoMethodCallback = capnp.Method{
		InterfaceID: Echo_TypeID, MethodID: 2,
		InterfaceName: "echo.capnp:Echo", MethodName: "callback",
	}
	callbackMethodCall = capnp.Method{
		InterfaceID: Callback_TypeID, MethodID: 0,
		InterfaceName: "echo.capnp:Callback", MethodName: "call",
	}
)

var (
	sizeOnePtr = capnp.ObjectSize{DataSize: 0, PointerCount: 1}
	sizeTwoPtr = capnp.ObjectSize{DataSize: 0, PointerCount: 2}
)

// ---- interface Echo ----

// Echo is a client of the Echo interface.
type Echo capnp.Client

func (c Echo) Echo(ctx context.Context, params func(Echo_echo_Params) error) (Echo_echo_Results_Future, capnp.ReleaseFunc) {
	s := capnp.Send{Method: echoMethodEcho}
	if params != nil {
		s.ArgsSize = sizeOnePtr
		s.PlaceArgs = func(s capnp.Struct) error { return params(Echo_echo_Params(s)) }
	}
	ans, release := capnp.Client(c).SendCall(ctx, s)
	return Echo_echo_Results_Future{Future: ans.Future()}, release
}

func (c Echo) Sub(ctx context.Context, params func(Echo_sub_Params) error) (Echo_sub_Results_Future, capnp.ReleaseFunc) {
	s := capnp.Send{Method: echoMethodSub}
	if params != nil {
		s.ArgsSize = capnp.ObjectSize{}
		s.PlaceArgs = func(s capnp.Struct) error { return params(Echo_sub_Params(s)) }
	}
	ans, release := capnp.Client(c).SendCall(ctx, s)
	return Echo_sub_Results_Future{Future: ans.Future()}, release
}

func (c Echo) Callback(ctx context.Context, params func(Echo_callback_Params) error) (Echo_callback_Results_Future, capnp.ReleaseFunc) {
	s := capnp.Send{Method: echoMethodCallback}
	if params != nil {
		s.ArgsSize = sizeTwoPtr
		s.PlaceArgs = func(s capnp.Struct) error { return params(Echo_callback_Params(s)) }
	}
	ans, release := capnp.Client(c).SendCall(ctx, s)
	return Echo_callback_Results_Future{Future: ans.Future()}, release
}

func (c Echo) AddRef() Echo   { return Echo(capnp.Client(c).AddRef()) }
func (c Echo) Release()       { capnp.Client(c).Release() }
func (c Echo) IsValid() bool  { return capnp.Client(c).IsValid() }
func (c Echo) String() string { return "Echo(" + capnp.Client(c).String() + ")" }

func (c Echo) EncodeAsPtr(seg *capnp.Segment) capnp.Ptr { return capnp.Client(c).EncodeAsPtr(seg) }
func (Echo) DecodeFromPtr(p capnp.Ptr) Echo             { return Echo(capnp.Client{}.DecodeFromPtr(p)) }

// Echo_Server is an Echo with a local implementation.
type Echo_Server interface {
	Echo(context.Context, Echo_echo) error
	Sub(context.Context, Echo_sub) error
	Callback(context.Context, Echo_callback) error
}

// Echo_NewServer creates a server.Server from an implementation of Echo_Server.
func Echo_NewServer(s Echo_Server) *server.Server {
	c, _ := s.(server.Shutdowner)
	return server.New(Echo_Methods(nil, s), s, c)
}

// Echo_ServerToClient creates a client from an implementation of
// Echo_Server. The caller must release it.
func Echo_ServerToClient(s Echo_Server) Echo {
	return Echo(capnp.NewClient(Echo_NewServer(s)))
}

// Echo_Methods appends the methods of Echo that invoke s.
func Echo_Methods(methods []server.Method, s Echo_Server) []server.Method {
	if cap(methods) == 0 {
		methods = make([]server.Method, 0, 3)
	}
	return append(methods,
		server.Method{Method: echoMethodEcho, Impl: func(ctx context.Context, call *server.Call) error {
			return s.Echo(ctx, Echo_echo{call})
		}},
		server.Method{Method: echoMethodSub, Impl: func(ctx context.Context, call *server.Call) error {
			return s.Sub(ctx, Echo_sub{call})
		}},
		server.Method{Method: echoMethodCallback, Impl: func(ctx context.Context, call *server.Call) error {
			return s.Callback(ctx, Echo_callback{call})
		}},
	)
}

// Echo_echo holds the state of a server call to Echo.echo.
type Echo_echo struct{ *server.Call }

func (c Echo_echo) Args() Echo_echo_Params { return Echo_echo_Params(c.Call.Args()) }

func (c Echo_echo) AllocResults() (Echo_echo_Results, error) {
	r, err := c.Call.AllocResults(sizeOnePtr)
	return Echo_echo_Results(r), err
}

// Echo_sub holds the state of a server call to Echo.sub.
type Echo_sub struct{ *server.Call }

func (c Echo_sub) Args() Echo_sub_Params { return Echo_sub_Params(c.Call.Args()) }

func (c Echo_sub) AllocResults() (Echo_sub_Results, error) {
	r, err := c.Call.AllocResults(sizeOnePtr)
	return Echo_sub_Results(r), err
}

// Echo_callback holds the state of a server call to Echo.callback.
type Echo_callback struct{ *server.Call }

func (c Echo_callback) Args() Echo_callback_Params { return Echo_callback_Params(c.Call.Args()) }

func (c Echo_callback) AllocResults() (Echo_callback_Results, error) {
	r, err := c.Call.AllocResults(sizeOnePtr)
	return Echo_callback_Results(r), err
}

// ---- interface Callback ----

// Callback is a client of the Callback interface.
type Callback capnp.Client

func (c Callback) Call(ctx context.Context, params func(Callback_call_Params) error) (Callback_call_Results_Future, capnp.ReleaseFunc) {
	s := capnp.Send{Method: callbackMethodCall}
	if params != nil {
		s.ArgsSize = sizeOnePtr
		s.PlaceArgs = func(s capnp.Struct) error { return params(Callback_call_Params(s)) }
	}
	ans, release := capnp.Client(c).SendCall(ctx, s)
	return Callback_call_Results_Future{Future: ans.Future()}, release
}

func (c Callback) AddRef() Callback { return Callback(capnp.Client(c).AddRef()) }
func (c Callback) Release()         { capnp.Client(c).Release() }
func (c Callback) IsValid() bool    { return capnp.Client(c).IsValid() }
func (c Callback) String() string   { return "Callback(" + capnp.Client(c).String() + ")" }

func (c Callback) EncodeAsPtr(seg *capnp.Segment) capnp.Ptr { return capnp.Client(c).EncodeAsPtr(seg) }
func (Callback) DecodeFromPtr(p capnp.Ptr) Callback {
	return Callback(capnp.Client{}.DecodeFromPtr(p))
}

// Callback_Server is a Callback with a local implementation.
type Callback_Server interface {
	Call(context.Context, Callback_call) error
}

func Callback_NewServer(s Callback_Server) *server.Server {
	c, _ := s.(server.Shutdowner)
	return server.New(Callback_Methods(nil, s), s, c)
}

func Callback_ServerToClient(s Callback_Server) Callback {
	return Callback(capnp.NewClient(Callback_NewServer(s)))
}

func Callback_Methods(methods []server.Method, s Callback_Server) []server.Method {
	if cap(methods) == 0 {
		methods = make([]server.Method, 0, 1)
	}
	return append(methods,
		server.Method{Method: callbackMethodCall, Impl: func(ctx context.Context, call *server.Call) error {
			return s.Call(ctx, Callback_call{call})
		}},
	)
}

// Callback_call holds the state of a server call to Callback.call.
type Callback_call struct{ *server.Call }

func (c Callback_call) Args() Callback_call_Params { return Callback_call_Params(c.Call.Args()) }

func (c Callback_call) AllocResults() (Callback_call_Results, error) {
	r, err := c.Call.AllocResults(sizeOnePtr)
	return Callback_call_Results(r), err
}

// ---- parameter and result structs ----

// dataOf reads pointer 0 of a parameter or result struct as Data.
func dataOf(s capnp.Struct) ([]byte, error) {
	p, err := s.Ptr(0)
	return p.Data(), err
}

type Echo_echo_Params capnp.Struct

func (s Echo_echo_Params) Data() ([]byte, error)   { return dataOf(capnp.Struct(s)) }
func (s Echo_echo_Params) SetData(v []byte) error  { return capnp.Struct(s).SetData(0, v) }
func (s Echo_echo_Params) HasData() bool           { return capnp.Struct(s).HasPtr(0) }
func (s Echo_echo_Params) Message() *capnp.Message { return capnp.Struct(s).Message() }

type Echo_echo_Results capnp.Struct

func (s Echo_echo_Results) Data() ([]byte, error)  { return dataOf(capnp.Struct(s)) }
func (s Echo_echo_Results) SetData(v []byte) error { return capnp.Struct(s).SetData(0, v) }
func (s Echo_echo_Results) HasData() bool          { return capnp.Struct(s).HasPtr(0) }

// Echo_echo_Results_Future is an Echo_echo_Results promised by a call.
type Echo_echo_Results_Future struct{ *capnp.Future }

func (f Echo_echo_Results_Future) Struct() (Echo_echo_Results, error) {
	p, err := f.Future.Ptr()
	return Echo_echo_Results(p.Struct()), err
}

type Echo_sub_Params capnp.Struct

type Echo_sub_Results capnp.Struct

func (s Echo_sub_Results) Echo() Echo {
	p, _ := capnp.Struct(s).Ptr(0)
	return Echo(p.Interface().Client())
}

func (s Echo_sub_Results) SetEcho(v Echo) error {
	if !v.IsValid() {
		return capnp.Struct(s).SetPtr(0, capnp.Ptr{})
	}
	seg := capnp.Struct(s).Segment()
	in := capnp.NewInterface(seg, seg.Message().CapTable().Add(capnp.Client(v)))
	return capnp.Struct(s).SetPtr(0, in.ToPtr())
}

// Echo_sub_Results_Future is an Echo_sub_Results promised by a call.
type Echo_sub_Results_Future struct{ *capnp.Future }

func (f Echo_sub_Results_Future) Struct() (Echo_sub_Results, error) {
	p, err := f.Future.Ptr()
	return Echo_sub_Results(p.Struct()), err
}

// Echo returns the promised capability, on which calls can be pipelined
// before the sub call has returned. The client is borrowed from the future.
func (f Echo_sub_Results_Future) Echo() Echo {
	return Echo(f.Future.Field(0, nil).Client())
}

type Echo_callback_Params capnp.Struct

func (s Echo_callback_Params) Cb() Callback {
	p, _ := capnp.Struct(s).Ptr(0)
	return Callback(p.Interface().Client())
}

func (s Echo_callback_Params) SetCb(v Callback) error {
	if !v.IsValid() {
		return capnp.Struct(s).SetPtr(0, capnp.Ptr{})
	}
	seg := capnp.Struct(s).Segment()
	in := capnp.NewInterface(seg, seg.Message().CapTable().Add(capnp.Client(v)))
	return capnp.Struct(s).SetPtr(0, in.ToPtr())
}

func (s Echo_callback_Params) Data() ([]byte, error) {
	p, err := capnp.Struct(s).Ptr(1)
	return p.Data(), err
}

func (s Echo_callback_Params) SetData(v []byte) error { return capnp.Struct(s).SetData(1, v) }

type Echo_callback_Results capnp.Struct

func (s Echo_callback_Results) Data() ([]byte, error)  { return dataOf(capnp.Struct(s)) }
func (s Echo_callback_Results) SetData(v []byte) error { return capnp.Struct(s).SetData(0, v) }

// Echo_callback_Results_Future is an Echo_callback_Results promised by a call.
type Echo_callback_Results_Future struct{ *capnp.Future }

func (f Echo_callback_Results_Future) Struct() (Echo_callback_Results, error) {
	p, err := f.Future.Ptr()
	return Echo_callback_Results(p.Struct()), err
}

type Callback_call_Params capnp.Struct

func (s Callback_call_Params) Data() ([]byte, error)  { return dataOf(capnp.Struct(s)) }
func (s Callback_call_Params) SetData(v []byte) error { return capnp.Struct(s).SetData(0, v) }

type Callback_call_Results capnp.Struct

func (s Callback_call_Results) Data() ([]byte, error)  { return dataOf(capnp.Struct(s)) }
func (s Callback_call_Results) SetData(v []byte) error { return capnp.Struct(s).SetData(0, v) }

// Callback_call_Results_Future is a Callback_call_Results promised by a call.
type Callback_call_Results_Future struct{ *capnp.Future }

func (f Callback_call_Results_Future) Struct() (Callback_call_Results, error) {
	p, err := f.Future.Ptr()
	return Callback_call_Results(p.Struct()), err
}
