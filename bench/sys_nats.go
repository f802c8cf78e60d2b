package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS request/reply through an embedded nats-server. Every message makes
// two hops: caller to server, server to responder (and back the same way).
// All callers share one nats.Conn; the responder has a second nats.Conn.
// nats.go hands a subscription's messages to its handler one at a time, so
// the echo responder answers requests one after another.
//
// fetchcall: a lookup request returns the subject of a second responder,
// which the caller then requests.
//
// callback: each caller subscribes, on the shared connection, to a callback
// subject of its own; the request carries that subject ahead of the data,
// and the responder, in a goroutine per request (it must wait), requests
// the callback subject before answering.

const (
	natsEcho     = "tetherbench.echo"
	natsLookup   = "tetherbench.lookup"
	natsSubEcho  = "tetherbench.sub.echo"
	natsCallback = "tetherbench.callback"
)

type natsWorker struct {
	prefix []byte // length-prefixed callback subject
	req    []byte
	sub    *nats.Subscription
}

type natsSys struct {
	ns        *natsserver.Server
	client    *nats.Conn // shared by the callers
	responder *nats.Conn
	mu        sync.Mutex
	closed    bool
	handlers  sync.WaitGroup // callback handlers of the responder
	ws        []natsWorker
}

func (*natsSys) Name() string                    { return "nats" }
func (*natsSys) Label(kind string, n int) string { return "nats" }

// startNATS starts an embedded nats-server on a free loopback port, with a
// maximum payload above the 1 MiB echo (the default is exactly 1 MiB).
func startNATS() (*natsserver.Server, error) { return startNATSAt(natsserver.RANDOM_PORT) }

// startNATSAt starts an embedded nats-server on a loopback port (a server
// restarted on the port of the last: see the reconnect storm).
func startNATSAt(port int) (*natsserver.Server, error) { return startNATSWith(port, 0) }

// startNATSWith is startNATSAt with the server's ping interval set to ping
// and at most two pings unanswered (0: the server's defaults).
func startNATSWith(port int, ping time.Duration) (*natsserver.Server, error) {
	opts := &natsserver.Options{
		Host:            "127.0.0.1",
		Port:            port,
		NoLog:           true,
		NoSigs:          true,
		NoSystemAccount: true,
		MaxPayload:      8 << 20,
	}
	if ping > 0 {
		opts.PingInterval, opts.MaxPingsOut = ping, 2
	}
	ns, err := natsserver.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errors.New("nats-server: not ready after 10 s")
	}
	return ns, nil
}

func (s *natsSys) Start() error {
	ns, err := startNATS()
	if err != nil {
		return err
	}
	s.ns = ns
	if s.responder, err = nats.Connect(ns.ClientURL()); err != nil {
		return fmt.Errorf("responder connect: %w", err)
	}
	r := s.responder
	echo := func(m *nats.Msg) { m.Respond(m.Data) }
	if _, err := r.Subscribe(natsEcho, echo); err != nil {
		return err
	}
	if _, err := r.Subscribe(natsSubEcho, echo); err != nil {
		return err
	}
	if _, err := r.Subscribe(natsLookup, func(m *nats.Msg) { m.Respond([]byte(natsSubEcho)) }); err != nil {
		return err
	}
	if _, err := r.Subscribe(natsCallback, s.callbackHandler); err != nil {
		return err
	}
	if err := r.Flush(); err != nil {
		return err
	}
	if s.client, err = nats.Connect(ns.ClientURL()); err != nil {
		return fmt.Errorf("client connect: %w", err)
	}
	return nil
}

// callbackHandler requests the caller's callback subject, then answers with
// what the callback returned.
func (s *natsSys) callbackHandler(m *nats.Msg) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.handlers.Done()
		if len(m.Data) == 0 || len(m.Data) < 1+int(m.Data[0]) {
			return
		}
		n := int(m.Data[0])
		subject, data := string(m.Data[1:1+n]), m.Data[1+n:]
		answer, err := s.responder.Request(subject, data, 10*time.Second)
		if err != nil {
			return // the caller times out
		}
		m.Respond(answer.Data)
	}()
}

// Prepare gives each caller a callback subject, subscribed on the shared
// client connection.
func (s *natsSys) Prepare(n int) error {
	s.ws = grow(s.ws, n)
	for i := range s.ws {
		if s.ws[i].sub != nil {
			continue
		}
		subject := "tetherbench.cb." + strconv.Itoa(i)
		sub, err := s.client.Subscribe(subject, func(m *nats.Msg) { m.Respond(m.Data) })
		if err != nil {
			return err
		}
		s.ws[i].sub = sub
		s.ws[i].prefix = append([]byte{byte(len(subject))}, subject...)
	}
	return s.client.Flush()
}

func (s *natsSys) Echo(ctx context.Context, w int, in []byte) ([]byte, error) {
	m, err := s.client.RequestWithContext(ctx, natsEcho, in)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (s *natsSys) FetchCall(ctx context.Context, w int, in []byte) ([]byte, error) {
	name, err := s.client.RequestWithContext(ctx, natsLookup, nil)
	if err != nil {
		return nil, err
	}
	m, err := s.client.RequestWithContext(ctx, string(name.Data), in)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (s *natsSys) Callback(ctx context.Context, w int, in []byte) ([]byte, error) {
	st := &s.ws[w]
	st.req = append(append(st.req[:0], st.prefix...), in...)
	m, err := s.client.RequestWithContext(ctx, natsCallback, st.req)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

func (s *natsSys) Close() error {
	if s.client != nil {
		s.client.Close()
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if s.responder != nil {
		s.responder.Close()
	}
	s.handlers.Wait()
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
	return nil
}
