// Multihop runs a chain server → relay → client and cuts the link in the
// middle, printing a transcript: calls through the relay, a callback from
// the server to the client through the relay, calls failing fast during the
// outage while the client's own connection stays up, and the same references
// working again afterwards.
//
//	go run ./examples/multihop                      # all three in one process
//	go run ./examples/multihop -role server -listen 127.0.0.1:7000
//	go run ./examples/multihop -role relay  -listen 127.0.0.1:7001 -upstream 127.0.0.1:7000
//	go run ./examples/multihop -role client -upstream 127.0.0.1:7001
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Users is the server's manager.
type Users struct {
	remoteable.Referenceable
	calls atomic.Int64
}

// User travels by value.
type User struct {
	Name  string
	Email string
}

func init() { remoteable.RegisterCopyable[User]("multihop.User") }

// RemoteMethods declares Get safe to repeat.
func (u *Users) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}}
}

// Get returns a user.
func (u *Users) Get(ctx context.Context, name string) (User, error) {
	u.calls.Add(1)
	return User{Name: name, Email: name + "@example.org"}, nil
}

// Greet calls the caller's greeter back, wherever it is.
func (u *Users) Greet(ctx context.Context, g *broker.Ref, name string) (string, error) {
	var reply string
	err := g.Call(ctx, "Hello", &reply, "server says hello to "+name)
	return reply, err
}

// greeter lives in the client; the server calls it through the relay.
type greeter struct{ remoteable.Referenceable }

func (*greeter) Hello(msg string) (string, error) { return "client heard: " + msg, nil }

// Hops is the relay's own manager, published next to the upstream ones.
type Hops struct{ remoteable.Referenceable }

func (*Hops) Where(ctx context.Context) (string, error) { return "relay", nil }

// transcript prints timed lines; signal slots write to it from the
// connections' goroutines, hence the lock.
type transcript struct {
	start time.Time
	mu    sync.Mutex
	w     io.Writer
}

func (t *transcript) say(who, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%8.1fms  %-7s %s\n", float64(time.Since(t.start).Microseconds())/1000, who, fmt.Sprintf(format, args...))
}

func main() {
	role := flag.String("role", "all", "all, server, relay or client")
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on (server, relay)")
	upstream := flag.String("upstream", "", "address of the next hop up (relay, client)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	tr := &transcript{start: time.Now(), w: os.Stdout}
	var err error
	switch *role {
	case "all":
		err = runAll(ctx, tr)
	case "server":
		err = runServer(ctx, tr, *listen)
	case "relay":
		err = runRelay(ctx, tr, *listen, *upstream)
	case "client":
		err = runClient(ctx, tr, *upstream)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "multihop:", err)
		os.Exit(1)
	}
}

// serve publishes root on addr until ctx ends or the returned stop is called.
func serve(root any, addr, name string) (string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := broker.NewServer(root, broker.WithName(name))
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	return ln.Addr().String(), func() { srv.Close(); <-done }, nil
}

// lasting are the options of the relay's and the client's lasting clients:
// a dead link is noticed within a second and redialled quickly.
func lasting() []remote.Option {
	return []remote.Option{
		remote.WithBroker(broker.WithDeadPeerTimeout(time.Second)),
		remote.WithBackoff(remote.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}),
		remote.WithDialTimeout(time.Second),
	}
}

// relay republishes upstream's registry, plus a manager of its own.
func relay(ctx context.Context, tr *transcript, listen, upstream string) (string, *remote.Client, func(), error) {
	up, err := remote.Connect(ctx, "tcp", upstream, lasting()...)
	if err != nil {
		return "", nil, nil, err
	}
	up.Connected.Connect(func(*broker.Conn) { tr.say("relay", "connected upstream") })
	up.Disconnected.Connect(func(err error) { tr.say("relay", "lost upstream: %v", err) })
	reg := registry.New(registry.WithUpstream(up.Registry()))
	if err := reg.Register("hops", &Hops{}); err != nil {
		return "", nil, nil, err
	}
	addr, stop, err := serve(reg, listen, "relay")
	if err != nil {
		up.Close()
		return "", nil, nil, err
	}
	return addr, up, func() { stop(); up.Close() }, nil
}

func runAll(ctx context.Context, tr *transcript) error {
	users := &Users{}
	reg := registry.New()
	if err := reg.Register("users", users); err != nil {
		return err
	}
	srvAddr, stopServer, err := serve(reg, "127.0.0.1:0", "server")
	if err != nil {
		return err
	}
	defer stopServer()
	tr.say("server", "publishing %v on %s", reg.Names(), srvAddr)

	// The fault proxy sits between the relay and the server.
	link, err := faultnet.New(srvAddr)
	if err != nil {
		return err
	}
	defer link.Close()

	relayAddr, up, stopRelay, err := relay(ctx, tr, "127.0.0.1:0", link.Addr())
	if err != nil {
		return err
	}
	defer stopRelay()
	tr.say("relay", "serving on %s, upstream through the fault proxy %s", relayAddr, link.Addr())

	cl, err := remote.Connect(ctx, "tcp", relayAddr, lasting()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var clientDrops atomic.Int64
	cl.Disconnected.Connect(func(error) { clientDrops.Add(1) })

	call := func(users *remote.Ref, name string) (User, time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		start := time.Now()
		u, err := broker.Call[User](cctx, users, "Get", name)
		return u, time.Since(start), err
	}

	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	names, err := cl.Registry().List(rctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	tr.say("client", "the relay offers %v", names)
	usersRef, err := cl.Registry().Lookup(rctx, "users")
	if err != nil {
		return fmt.Errorf("lookup: %w", err)
	}
	u, took, err := call(usersRef, "alice")
	if err != nil {
		return err
	}
	tr.say("client", "Get(alice) through the relay = %+v (%v)", u, took.Round(time.Microsecond))
	hello, err := broker.Call[string](rctx, usersRef, "Greet", &greeter{}, "bob")
	if err != nil {
		return fmt.Errorf("greet: %w", err)
	}
	tr.say("client", "Greet: %s", hello)

	tr.say("proxy", "--- cutting the server-relay link (reset, refusing new connections) ---")
	link.Refuse(true)
	link.Reset()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for up.State() != remote.Waiting {
		if !up.WaitForStateChange(wctx, up.State()) {
			return errors.New("the relay never noticed the cut")
		}
	}
	for i := 0; i < 3; i++ {
		_, took, err := call(usersRef, "carol")
		if err == nil {
			return errors.New("a call went through during the outage")
		}
		tr.say("client", "Get(carol) failed in %v: %v (ErrDisconnected: %v)", took.Round(time.Microsecond), err, errors.Is(err, remote.ErrDisconnected))
	}
	hops, err := cl.Registry().Lookup(rctx, "hops")
	if err != nil {
		return err
	}
	where, err := broker.Call[string](rctx, hops, "Where")
	if err != nil {
		return err
	}
	tr.say("client", "the relay's own manager still answers: %q; client link state: %v", where, cl.State())

	tr.say("proxy", "--- restoring the link ---")
	restored := time.Now()
	link.Restore()
	if err := up.WaitConnected(wctx); err != nil {
		return err
	}
	tr.say("relay", "upstream back after %v", time.Since(restored).Round(time.Millisecond))
	u, took, err = call(usersRef, "dave")
	if err != nil {
		return fmt.Errorf("after the outage: %w", err)
	}
	tr.say("client", "the same reference again: Get(dave) = %+v (%v)", u, took.Round(time.Microsecond))
	tr.say("summary", "server handled %d Get calls; the client's own connection dropped %d times",
		users.calls.Load(), clientDrops.Load())
	if clientDrops.Load() != 0 {
		return errors.New("the client's connection dropped")
	}
	return nil
}

func runServer(ctx context.Context, tr *transcript, listen string) error {
	reg := registry.New()
	if err := reg.Register("users", &Users{}); err != nil {
		return err
	}
	addr, stop, err := serve(reg, listen, "server")
	if err != nil {
		return err
	}
	defer stop()
	tr.say("server", "publishing %v on %s; interrupt to stop", reg.Names(), addr)
	<-ctx.Done()
	return nil
}

func runRelay(ctx context.Context, tr *transcript, listen, upstream string) error {
	if upstream == "" {
		return errors.New("a relay needs -upstream")
	}
	addr, _, stop, err := relay(ctx, tr, listen, upstream)
	if err != nil {
		return err
	}
	defer stop()
	tr.say("relay", "serving on %s for %s; interrupt to stop", addr, upstream)
	<-ctx.Done()
	return nil
}

func runClient(ctx context.Context, tr *transcript, upstream string) error {
	if upstream == "" {
		return errors.New("a client needs -upstream")
	}
	cl, err := remote.Connect(ctx, "tcp", upstream, lasting()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	cl.Connected.Connect(func(*broker.Conn) { tr.say("client", "connected") })
	cl.Disconnected.Connect(func(err error) { tr.say("client", "lost the link: %v", err) })
	var users *remote.Ref
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if users == nil {
			users, err = cl.Registry().Lookup(cctx, "users")
		}
		if err == nil {
			var u User
			start := time.Now()
			if err = users.Call(cctx, "Get", &u, "alice"); err == nil {
				tr.say("client", "Get(alice) = %+v (%v)", u, time.Since(start).Round(time.Microsecond))
			}
		}
		cancel()
		if err != nil {
			tr.say("client", "call failed: %v", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
}
