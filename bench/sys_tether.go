package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/remoteable"
)

// tetherRoot is the object the Tether server publishes.
type tetherRoot struct {
	remoteable.Referenceable
	sub *tetherSub
}

func (*tetherRoot) Echo(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// Sub returns a second object, which travels by reference.
func (r *tetherRoot) Sub(ctx context.Context) (*tetherSub, error) { return r.sub, nil }

// Callback calls back the object the caller passed, then returns what it
// answered. The handle received is released once used.
func (*tetherRoot) Callback(ctx context.Context, cb *broker.Ref, b []byte) ([]byte, error) {
	defer cb.Release()
	var out []byte
	if err := cb.Call(ctx, "Call", &out, b); err != nil {
		return nil, err
	}
	return out, nil
}

// tetherSub is the object fetchcall fetches by reference and then calls.
type tetherSub struct{ remoteable.Referenceable }

func (*tetherSub) Echo(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

// tetherCallback is the client-side object passed by reference in callback.
type tetherCallback struct{ remoteable.Referenceable }

func (*tetherCallback) Call(ctx context.Context, b []byte) ([]byte, error) { return b, nil }

type tetherWorker struct {
	out []byte
	cb  *tetherCallback
}

type tetherSys struct {
	srv  *broker.Server
	ln   net.Listener
	done chan error
	conn *broker.Conn
	root *broker.Ref
	ws   []tetherWorker
}

func (*tetherSys) Name() string                    { return "tether" }
func (*tetherSys) Label(kind string, n int) string { return "tether" }

func (s *tetherSys) Start() error {
	ln, err := listen()
	if err != nil {
		return err
	}
	s.ln = ln
	s.srv = broker.NewServer(&tetherRoot{sub: &tetherSub{}})
	s.done = make(chan error, 1)
	go func() { s.done <- s.srv.Serve(ln) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.conn, err = broker.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	s.root = s.conn.Root()
	return nil
}

func (s *tetherSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	for i := range s.ws {
		if s.ws[i].cb == nil {
			s.ws[i].cb = &tetherCallback{}
		}
	}
	return nil
}

func (s *tetherSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := s.root.Call(ctx, "Echo", &st.out, in)
	return st.out, err
}

func (s *tetherSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	ref, err := broker.Call[*broker.Ref](ctx, s.root, "Sub")
	if err != nil {
		return nil, err
	}
	err = ref.Call(ctx, "Echo", &st.out, in)
	ref.Release()
	return st.out, err
}

func (s *tetherSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	err := s.root.Call(ctx, "Callback", &st.out, st.cb, in)
	return st.out, err
}

func (s *tetherSys) Close() error {
	var errs []error
	if s.conn != nil {
		s.conn.Close()
		<-s.conn.Done()
	}
	if s.srv != nil {
		s.srv.Close()
		if err := <-s.done; err != nil && !errors.Is(err, broker.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("serve: %w", err))
		}
	}
	return errors.Join(errs...)
}
