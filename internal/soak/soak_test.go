package soak

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

var (
	soakDuration = flag.Duration("soak.duration", 60*time.Second, "how long the soak runs load under faults")
	soakSeed     = flag.Uint64("soak.seed", 0, "the seed of the fault schedule and the load (0: from the clock)")
	soakClients  = flag.Int("soak.clients", 3, "clients behind the relay")
)

// callTimeout is every call's deadline; a call must end (with a result or a
// typed error) by then, give or take overrunGrace for the scheduler of a
// busy 2-core machine under the race detector.
const (
	callTimeout  = 2 * time.Second
	overrunGrace = 3 * time.Second
)

// Bank is the server's manager. Its state lives outside the broker.Server,
// so it survives the server's restarts as a process's disk would.
type Bank struct {
	remoteable.Referenceable
	model *cache.Map[string, int]

	mu      sync.Mutex
	ran     map[string]int // deposit op → times it ran
	balance int
}

// RemoteMethods declares what may be repeated: everything but Deposit.
func (*Bank) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{
		"Balance": {Idempotent: true}, "Echo": {Idempotent: true},
		"Open": {Idempotent: true}, "Model": {Idempotent: true},
	}
}

// Deposit must run at most once per op: it is not idempotent.
func (b *Bank) Deposit(ctx context.Context, op string, amount int) (int, error) {
	b.mu.Lock()
	b.ran[op]++
	b.balance += amount
	bal := b.balance
	b.mu.Unlock()
	return bal, b.model.Set("deposit:"+op[:strings.IndexByte(op, '/')], amount)
}

func (b *Bank) Balance(ctx context.Context) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.balance, nil
}

func (b *Bank) Echo(ctx context.Context, s string) (string, error) { return s, nil }

// Ping calls the caller back: server → relay → client.
func (b *Bank) Ping(ctx context.Context, cb *broker.Ref, n int) (int, error) {
	var r int
	err := cb.Call(ctx, "Pong", &r, n)
	return r, err
}

// Open hands out a new object by reference.
func (b *Bank) Open(ctx context.Context, name string) (*Account, error) {
	return &Account{name: name}, nil
}

func (b *Bank) Model(ctx context.Context) (*cache.Map[string, int], error) { return b.model, nil }

// Account is handed out by reference and released by its holders.
type Account struct {
	remoteable.Referenceable
	name string
}

func (a *Account) Name(ctx context.Context) (string, error) { return a.name, nil }

// Ponger is a client's object the server calls back.
type Ponger struct {
	remoteable.Referenceable
	pongs atomic.Int64
}

func (p *Ponger) Pong(ctx context.Context, n int) (int, error) { p.pongs.Add(1); return n + 1, nil }

// report gathers what the soak saw, for the invariants and the summary.
type report struct {
	mu         sync.Mutex
	calls      map[string]int    // by outcome: "ok" or the error's kind
	examples   map[string]string // an error message of each kind
	violations []string
	faults     map[string]int
	deposits   map[string]bool // ops whose Deposit returned a result
}

func (r *report) count(what string, err error) {
	r.mu.Lock()
	r.calls[what]++
	if _, ok := r.examples[what]; !ok && err != nil {
		r.examples[what] = err.Error()
	}
	r.mu.Unlock()
}

func (r *report) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.violations) < 50 {
		r.violations = append(r.violations, fmt.Sprintf(format, args...))
	}
}

// kind names an error for the summary, or "" for one that is not
// expected: every failure must be a context error or a link error, this
// process's or one a relay reports for its own upstream link. Nothing in
// the soak makes a handler fail, so any other remote error is a finding.
func kind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, remote.ErrDisconnected):
		return "disconnected"
	case errors.Is(err, broker.ErrConnectionLost):
		return "connection-lost"
	case errors.Is(err, broker.ErrDeadReference):
		return "dead-reference"
	}
	return ""
}

// server is the soak's server, restartable on the same address.
type server struct {
	reg  *registry.Registry
	addr string
	mu   sync.Mutex
	srv  *broker.Server
	done chan struct{}
}

func (s *server) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the old listener's port may take a moment to free
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	srv := broker.NewServer(s.reg, broker.WithName("soak-server"), broker.WithDeadPeerTimeout(600*time.Millisecond))
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	s.mu.Lock()
	s.srv, s.done = srv, done
	s.mu.Unlock()
}

func (s *server) stop() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

func (s *server) stats() broker.ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return broker.ServerStats{}
	}
	return s.srv.Stats()
}

func lasting(addr, name string) (*remote.Client, error) {
	return remote.Connect(context.Background(), "tcp", addr,
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 300 * time.Millisecond}),
		remote.WithDialTimeout(time.Second),
		remote.WithBroker(broker.WithName(name), broker.WithDeadPeerTimeout(600*time.Millisecond), broker.WithHandshakeTimeout(time.Second)))
}

// client is one process at the end of the chain.
type client struct {
	id     int
	cl     *remote.Client
	bank   *remote.Ref
	mirror *cache.Mirror[string, int]
	ponger *Ponger
	stop   func()
	// what its mirror's watcher saw: versions never go back, and no
	// (key, version) comes twice
	wmu  sync.Mutex
	last map[string]uint64 // epoch → last version
	seen map[string]bool   // epoch/key of the changes at the last version
}

// TestSoak runs a chain server → relay → clients under load while a seeded
// schedule resets, black-holes, delays and refuses links and restarts the
// server, then checks: every call ended with a result or a typed error by
// its deadline; no Deposit (not idempotent) ran twice; every mirror equals
// the model; no mirror saw a change twice or out of order; the reference
// tables and goroutines are back to their baselines once the clients
// close; the heap stayed bounded.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs for -soak.duration; -short skips it")
	}
	leakcheck.Check(t)
	seed := *soakSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	replay := fmt.Sprintf("go test -race -run Soak ./internal/soak -soak.seed=%d -soak.duration=%v -soak.clients=%d", seed, *soakDuration, *soakClients)
	t.Logf("seed %d (replay: %s)", seed, replay)
	rep := &report{calls: map[string]int{}, examples: map[string]string{}, faults: map[string]int{}, deposits: map[string]bool{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d; replay: %s", seed, replay)
		}
	})

	// The server, its model and a writer that keeps changing it.
	bank := &Bank{model: cache.NewMap[string, int](cache.WithLogSize(1024)), ran: map[string]int{}}
	reg := registry.New()
	require.NoError(t, reg.Register("bank", bank))
	srv := &server{reg: reg, addr: "127.0.0.1:0"}
	srv.start(t)
	defer srv.stop()
	writerCtx, stopWriter := context.WithCancel(context.Background())
	writerDone := make(chan struct{})
	var writes atomic.Int64
	go func() {
		defer close(writerDone)
		rnd := rand.New(rand.NewPCG(seed, 1))
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-writerCtx.Done():
				return
			case <-tick.C:
			}
			k := fmt.Sprintf("k%02d", rnd.IntN(64))
			if rnd.IntN(8) == 0 {
				if bank.model.Delete(k) {
					writes.Add(1)
				}
			} else if bank.model.Set(k, rnd.IntN(1000)) == nil {
				writes.Add(1)
			}
		}
	}()
	defer func() { stopWriter(); <-writerDone }()

	// The relay, through a faulty link to the server.
	upLink, err := faultnet.New(srv.addr)
	require.NoError(t, err)
	defer upLink.Close()
	relayUp, err := lasting(upLink.Addr(), "soak-relay")
	require.NoError(t, err)
	defer relayUp.Close()
	relayLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	relay := broker.NewServer(relayUp.Registry(), broker.WithName("soak-relay"), broker.WithDeadPeerTimeout(600*time.Millisecond))
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); relay.Serve(relayLn) }()
	defer func() { relay.Close(); <-relayDone }()

	// The clients, each through a faulty link to the relay.
	links := []*faultnet.Proxy{upLink}
	clients := make([]*client, *soakClients)
	ctx := context.Background()
	for i := range clients {
		p, err := faultnet.New(relayLn.Addr().String())
		require.NoError(t, err)
		defer p.Close()
		links = append(links, p)
		c := &client{id: i, ponger: &Ponger{}, last: map[string]uint64{}, seen: map[string]bool{}}
		c.cl, err = lasting(p.Addr(), fmt.Sprintf("soak-client-%d", i))
		require.NoError(t, err)
		defer c.cl.Close()
		setup, cancel := context.WithTimeout(ctx, 30*time.Second)
		c.bank, err = c.cl.Registry().Lookup(remote.WaitForLink(setup), "bank")
		require.NoError(t, err)
		require.NoError(t, c.bank.Call(remote.WaitForLink(setup), "Model", &c.mirror))
		cancel()
		c.stop = c.mirror.Changed.Connect(func(ev cache.Change[string, int]) {
			c.wmu.Lock()
			defer c.wmu.Unlock()
			epoch := c.mirror.Epoch()
			if ev.Version < c.last[epoch] {
				rep.violate("client %d: v%d after v%d", c.id, ev.Version, c.last[epoch])
			}
			if ev.Version != c.last[epoch] {
				// Versions never go back (checked above), so a change can
				// only come twice at the version of the last one: the
				// record of the earlier versions is not needed.
				clear(c.seen)
			}
			c.last[epoch] = ev.Version
			id := fmt.Sprintf("%s/%s", epoch, ev.Key)
			if c.seen[id] {
				rep.violate("client %d: %s at v%d applied twice", c.id, id, ev.Version)
			}
			c.seen[id] = true
		})
		clients[i] = c
	}

	// Baselines, once everything is set up and quiet.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc
	baseExports := srv.stats().Exports
	baseImports := relayUp.Stats().Conn.Imports

	// Load: every client calls in both directions until the faults stop.
	loadCtx, stopLoad := context.WithCancel(ctx)
	var load sync.WaitGroup
	defer func() { stopLoad(); load.Wait() }() // also when a check below gives up early
	var opSeq atomic.Int64
	for _, c := range clients {
		load.Add(1)
		go func() {
			defer load.Done()
			rnd := rand.New(rand.NewPCG(seed, uint64(c.id)+100))
			for loadCtx.Err() == nil {
				c.one(rep, rnd, &opSeq)
			}
		}()
	}

	// Faults, from the seeded schedule.
	rnd := rand.New(rand.NewPCG(seed, 2))
	end := time.Now().Add(*soakDuration)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(100+rnd.IntN(500)) * time.Millisecond)
		p := links[rnd.IntN(len(links))]
		switch n := rnd.IntN(20); {
		case n < 6:
			rep.faults["reset"]++
			p.Reset()
		case n < 10:
			rep.faults["black-hole"]++
			p.Blackhole(true)
			time.Sleep(time.Duration(200+rnd.IntN(1300)) * time.Millisecond)
			p.Blackhole(false)
		case n < 14:
			rep.faults["delay"]++
			p.SetDelay(time.Duration(5+rnd.IntN(40)) * time.Millisecond)
			time.Sleep(time.Duration(300+rnd.IntN(1500)) * time.Millisecond)
			p.SetDelay(0)
		case n < 18:
			rep.faults["refuse"]++
			p.Refuse(true)
			p.Reset()
			time.Sleep(time.Duration(200+rnd.IntN(600)) * time.Millisecond)
			p.Refuse(false)
		default:
			rep.faults["server-restart"]++
			srv.stop()
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
			srv.start(t)
		}
	}
	for _, p := range links {
		p.Restore()
	}
	stopLoad()
	load.Wait()
	stopWriter()
	<-writerDone
	// A deposit the links delayed may still be on its way to the server:
	// wait until nothing has run for a while before comparing.
	quiet := func() (int, uint64) {
		bank.mu.Lock()
		defer bank.mu.Unlock()
		return len(bank.ran), bank.model.Version()
	}
	for n, v := quiet(); ; {
		time.Sleep(500 * time.Millisecond)
		n2, v2 := quiet()
		if n2 == n && v2 == v {
			break
		}
		n, v = n2, v2
	}

	// Every mirror catches up with the model.
	want, version := bank.model.Snapshot()
	settle := time.Now().Add(60 * time.Second)
	for _, c := range clients {
		for {
			got, v := c.mirror.Snapshot()
			if v == version && !c.mirror.Stale() && c.mirror.Epoch() == bank.model.Epoch() {
				if !maps.Equal(got, want) {
					rep.violate("client %d: the mirror at v%d differs from the model", c.id, v)
				}
				break
			}
			if time.Now().After(settle) {
				rep.violate("client %d: mirror at v%d (stale %v, err %v), model at v%d", c.id, v, c.mirror.Stale(), c.mirror.Err(), version)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// No deposit ran twice, and each that returned a result ran once.
	bank.mu.Lock()
	ranCount := maps.Clone(bank.ran)
	bank.mu.Unlock()
	for op, n := range ranCount {
		if n > 1 {
			rep.violate("deposit %s ran %d times", op, n)
		}
	}
	rep.mu.Lock()
	returned := slices.Collect(maps.Keys(rep.deposits))
	rep.mu.Unlock()
	for _, op := range returned {
		if ranCount[op] != 1 {
			rep.violate("deposit %s returned a result but ran %d times", op, ranCount[op])
		}
	}
	ran := len(ranCount)

	// The heap may grow by 64 MiB, plus what the test itself keeps of each
	// deposit (the bank's record and the report's: about 200 bytes).
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapAfter := ms.HeapAlloc
	if allowed := heapBefore + 64<<20 + uint64(256*ran); heapAfter > allowed {
		rep.violate("heap grew from %d to %d bytes (allowed %d)", heapBefore, heapAfter, allowed)
	}

	// Clients leave: the relay and the server let go of what they held.
	var pongs int64
	for _, c := range clients {
		pongs += c.ponger.pongs.Load()
		c.stop()
		c.mirror.Close()
		c.cl.Close()
	}
	baseline := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				rep.violate("not back to baseline: %s", what)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	baseline("relay connections", func() bool { return relay.Stats().Conns == 0 })
	baseline(fmt.Sprintf("server exports (baseline %d)", baseExports), func() bool {
		st := srv.stats()
		return st.Exports <= baseExports && st.Observers == 0
	})
	baseline("relay's upstream mirrors", func() bool { return relayUp.Stats().Conn.Mirrors == 0 })
	// The server's table only shows what happened since its last restart;
	// the relay's imports show what the relay still holds of it.
	baseline(fmt.Sprintf("relay's upstream imports (baseline %d)", baseImports), func() bool {
		return relayUp.Stats().Conn.Imports <= baseImports
	})
	relayStats, serverStats := relayUp.Stats(), srv.stats()

	// The summary.
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var outcomes []string
	total := 0
	for k, n := range rep.calls {
		outcomes = append(outcomes, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(outcomes)
	var faults []string
	for k, n := range rep.faults {
		faults = append(faults, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(faults)
	t.Logf("soak summary (seed %d, %v, %d clients):", seed, *soakDuration, len(clients))
	t.Logf("  faults: %s", strings.Join(faults, ", "))
	t.Logf("  calls: %d (%s)", total, strings.Join(outcomes, ", "))
	for k, msg := range rep.examples {
		t.Logf("    %s, e.g. %s", k, msg)
	}
	t.Logf("  deposits run: %d; callbacks answered: %d; violations: %d", ran, pongs, len(rep.violations))
	t.Logf("  model: %d changes written, at v%d when the mirrors were compared", writes.Load(), version)
	t.Logf("  relay upstream: %d reconnects, %d failed dials; server after: %d exports (baseline %d), %d observers",
		relayStats.Reconnects, relayStats.DialFailures, serverStats.Exports, baseExports, serverStats.Observers)
	t.Logf("  heap: %d KiB before the load, %d KiB after", heapBefore>>10, heapAfter>>10)
	if rep.calls["ok"] == 0 {
		rep.violations = append(rep.violations, "no call succeeded")
	}
	for _, v := range rep.violations {
		t.Errorf("violation: %s", v)
	}
}

// one makes one call of a random kind and records its outcome.
func (c *client) one(rep *report, rnd *rand.Rand, seq *atomic.Int64) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	start := time.Now()
	var err error
	what := ""
	switch n := rnd.IntN(10); {
	case n < 3:
		what = "Deposit"
		op := fmt.Sprintf("c%d/%d", c.id, seq.Add(1))
		var bal int
		if err = c.bank.Call(ctx, "Deposit", &bal, op, 1+rnd.IntN(9)); err == nil {
			rep.mu.Lock()
			rep.deposits[op] = true
			rep.mu.Unlock()
		}
	case n < 5:
		what = "Balance"
		_, err = broker.Call[int](ctx, c.bank, "Balance")
	case n < 6:
		what = "Echo"
		var s string
		if err = c.bank.Call(ctx, "Echo", &s, "hello"); err == nil && s != "hello" {
			rep.violate("Echo returned %q", s)
		}
	case n < 8:
		what = "Ping"
		var r int
		if err = c.bank.Call(ctx, "Ping", &r, c.ponger, 41); err == nil && r != 42 {
			rep.violate("Ping returned %d", r)
		}
	default:
		what = "Open"
		var acct *remote.Ref
		if err = c.bank.Call(ctx, "Open", &acct, fmt.Sprint("a", c.id)); err == nil {
			var name string
			if err = acct.Call(ctx, "Name", &name); err == nil && name != fmt.Sprint("a", c.id) {
				rep.violate("Account.Name returned %q", name)
			}
			acct.Release()
		}
	}
	if took := time.Since(start); took > callTimeout+overrunGrace {
		rep.violate("%s took %v, past its %v deadline", what, took, callTimeout)
	}
	if err == nil {
		rep.count("ok", nil)
		return
	}
	k := kind(err)
	if k == "" {
		rep.violate("%s failed with an untyped error: %v (%T)", what, err, err)
		k = "untyped"
	}
	rep.count(k, err)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, remote.ErrDisconnected) {
		// Back off a little, as a real caller would, rather than spin.
		time.Sleep(time.Duration(rnd.IntN(20)) * time.Millisecond)
	}
}
