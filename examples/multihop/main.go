package main

//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Users,Greeter,Hops

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Users is the contract of the server's manager: the client calls it
// through the stub tether gen wrote (tether_gen.go), as it would call the
// manager itself.
type Users interface {
	// Get returns a user.
	Get(ctx context.Context, name string) (User, error)
	// Greet calls g back, wherever it is.
	Greet(ctx context.Context, g Greeter, name string) (string, error)
	// Directory returns the directory: the model itself on the server, a
	// mirror that stays in sync with it through the stub.
	Directory(ctx context.Context) (cache.View[string, User], error)
}

// Greeter is the callback Greet takes: the client passes its own object.
type Greeter interface {
	// Hello answers a greeting.
	Hello(ctx context.Context, msg string) (string, error)
}

// Hops is the contract of the relay's own manager.
type Hops interface {
	// Where says where the manager runs.
	Where(ctx context.Context) (string, error)
}

// users is the server's manager: it implements Users. Its directory is an
// observable model.
type users struct {
	remoteable.Referenceable
	calls atomic.Int64
	dir   *cache.Map[string, User]
}

var _ Users = (*users)(nil)

// newUsers returns the manager with alice and bob in its directory.
func newUsers() *users {
	u := &users{dir: cache.NewMap[string, User]()}
	u.put("alice", "alice@example.org")
	u.put("bob", "bob@example.org")
	return u
}

// put sets a directory entry; a User always encodes, so Set cannot fail.
func (u *users) put(name, email string) {
	if err := u.dir.Set(name, User{Name: name, Email: email}); err != nil {
		panic(err)
	}
}

// User travels by value.
type User struct {
	Name  string
	Email string
}

// init registers User, so that it arrives as a User on every hop.
func init() { remoteable.RegisterCopyable[User]("multihop.User") }

// RemoteMethods declares Get and Directory safe to repeat. Mirrors ride
// out outages without it (they find the model again by its feed's token);
// declaring Directory lets them follow a restarted server too, by calling
// it again.
func (u *users) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Get": {Idempotent: true}, "Directory": {Idempotent: true}}
}

// Directory returns the directory model: a remote caller receives a mirror.
func (u *users) Directory(ctx context.Context) (cache.View[string, User], error) {
	return u.dir, nil
}

// Get returns a user.
func (u *users) Get(ctx context.Context, name string) (User, error) {
	u.calls.Add(1)
	return User{Name: name, Email: name + "@example.org"}, nil
}

// Greet calls the caller's greeter back, wherever it is: g is the stub of
// the client's object, whose calls go back through the relay.
func (u *users) Greet(ctx context.Context, g Greeter, name string) (string, error) {
	return g.Hello(ctx, "server says hello to "+name)
}

// greeter lives in the client; the server calls it through the relay.
type greeter struct{ remoteable.Referenceable }

// Hello answers the server's greeting.
func (*greeter) Hello(_ context.Context, msg string) (string, error) {
	return "client heard: " + msg, nil
}

// hops is the relay's own manager, published next to the upstream ones.
type hops struct{ remoteable.Referenceable }

// Where says that the manager runs in the relay.
func (*hops) Where(ctx context.Context) (string, error) { return "relay", nil }

// transcript prints timed lines; signal slots write to it from the
// connections' goroutines, hence the lock.
type transcript struct {
	start time.Time
	mu    sync.Mutex
	w     io.Writer
}

// say prints one line of the transcript: when, who, what.
func (t *transcript) say(who, format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, "%8.1fms  %-7s %s\n", float64(time.Since(t.start).Microseconds())/1000, who, fmt.Sprintf(format, args...))
}

// DirectoryMirror is a client's mirror of the server's directory.
type DirectoryMirror = cache.Mirror[string, User]

// directory mirrors the directory of users, a stub: what a stub's
// Directory returns is a mirror, whose StaleChanged signal and Close the
// demo uses besides the cache.View that code shared with the server reads.
func directory(ctx context.Context, users Users) (*DirectoryMirror, error) {
	view, err := users.Directory(ctx)
	if err != nil {
		return nil, fmt.Errorf("directory: %w", err)
	}
	mir, ok := view.(*DirectoryMirror)
	if !ok {
		return nil, fmt.Errorf("directory: got a %T, not a mirror: is the manager local?", view)
	}
	return mir, nil
}

// event is one thing a mirror reported: a change, or (stale != nil) a
// stale/live transition.
type event struct {
	change cache.Change[string, User]
	stale  *bool
}

// watcher turns a mirror's Changed and StaleChanged signals into one
// channel, so that the demo's main goroutine sees them in the order the
// mirror fired them and prints them in a deterministic place.
type watcher struct {
	events chan event
	done   chan struct{}
	stops  []func()
}

// watch starts a watcher of mir's events.
func watch(mir *DirectoryMirror) *watcher {
	w := &watcher{events: make(chan event, 64), done: make(chan struct{})}
	send := func(ev event) {
		select {
		case w.events <- ev:
		case <-w.done: // nobody reads any more
		}
	}
	w.stops = []func(){
		mir.Changed.Connect(func(c cache.Change[string, User]) { send(event{change: c}) }),
		mir.StaleChanged.Connect(func(stale bool) { send(event{stale: &stale}) }),
	}
	return w
}

// next returns the mirror's next event, waiting at most until ctx ends.
func (w *watcher) next(ctx context.Context) (event, error) {
	select {
	case ev := <-w.events:
		return ev, nil
	case <-ctx.Done():
		return event{}, fmt.Errorf("waiting for the directory mirror: %w", ctx.Err())
	}
}

// nextChange returns the next event, which must be a change.
func (w *watcher) nextChange(ctx context.Context) (cache.Change[string, User], error) {
	ev, err := w.next(ctx)
	if err != nil {
		return cache.Change[string, User]{}, err
	}
	if ev.stale != nil {
		return cache.Change[string, User]{}, fmt.Errorf("expected a change, the mirror reported stale=%v", *ev.stale)
	}
	return ev.change, nil
}

// close disconnects the watcher; the mirror's goroutine is never left
// blocked on the channel.
func (w *watcher) close() {
	for _, stop := range w.stops {
		stop()
	}
	close(w.done)
}

// describe prints a change the same way on both sides.
func describe(c cache.Change[string, User]) string {
	if c.Deleted {
		return fmt.Sprintf("v%d delete %s", c.Version, c.Key)
	}
	return fmt.Sprintf("v%d set %s = %s", c.Version, c.Key, c.Value.Email)
}

// entries prints a model's entries in key order.
func entries(m map[string]User) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k].Email)
	}
	return b.String()
}

// main runs the role the flags name.
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
	if err := reg.Register("hops", &hops{}); err != nil {
		return "", nil, nil, err
	}
	addr, stop, err := serve(reg, listen, "relay")
	if err != nil {
		up.Close()
		return "", nil, nil, err
	}
	return addr, up, func() { stop(); up.Close() }, nil
}

// demo is the whole chain in one process (server, fault proxy, relay,
// client) and what the steps of its transcript share.
type demo struct {
	tr     *transcript
	mgr    *users           // the server's manager
	link   *faultnet.Proxy  // between the relay and the server
	up     *remote.Client   // the relay's link upstream
	cl     *remote.Client   // the client's link to the relay
	drops  atomic.Int64     // how often the client's own link dropped
	users  Users            // the client's typed reference to the server's manager
	dir    *DirectoryMirror // the client's mirror of the server's directory
	w      *watcher         // dir's events
	before uint64           // dir's version when the link was cut
	stops  []func()         // what close undoes, in reverse order
}

// runAll runs the chain in one process and tells its story: calls through
// the relay, an outage in the middle, and everything working again after.
func runAll(ctx context.Context, tr *transcript) error {
	d := &demo{tr: tr}
	defer d.close()
	if err := d.start(ctx); err != nil {
		return err
	}
	steps := []func(context.Context) error{
		d.firstCalls, d.followDirectory, d.cutLink, d.changeDuringOutage, d.restoreLink, d.verify,
	}
	for _, step := range steps {
		if err := within(ctx, 10*time.Second, step); err != nil {
			return err
		}
	}
	return nil
}

// within runs one step of the story bounded to limit, so that a demo that
// stalls fails instead of hanging.
func within(ctx context.Context, limit time.Duration, step func(context.Context) error) error {
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return step(sctx)
}

// onClose adds stop to what close undoes.
func (d *demo) onClose(stop func()) { d.stops = append(d.stops, stop) }

// close stops everything start and the steps set up, the last first.
func (d *demo) close() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
}

// start sets up the chain: the server, the fault proxy in front of it, the
// relay behind the proxy, and the client of the relay.
func (d *demo) start(ctx context.Context) error {
	d.mgr = newUsers()
	reg := registry.New()
	if err := reg.Register("users", d.mgr); err != nil {
		return err
	}
	srvAddr, stopServer, err := serve(reg, "127.0.0.1:0", "server")
	if err != nil {
		return err
	}
	d.onClose(stopServer)
	d.tr.say("server", "publishing %v on %s", reg.Names(), srvAddr)

	// The fault proxy sits between the relay and the server.
	if d.link, err = faultnet.New(srvAddr); err != nil {
		return err
	}
	d.onClose(func() { d.link.Close() })

	relayAddr, up, stopRelay, err := relay(ctx, d.tr, "127.0.0.1:0", d.link.Addr())
	if err != nil {
		return err
	}
	d.up = up
	d.onClose(stopRelay)
	d.tr.say("relay", "serving on %s, upstream through the fault proxy %s", relayAddr, d.link.Addr())

	if d.cl, err = remote.Connect(ctx, "tcp", relayAddr, lasting()...); err != nil {
		return err
	}
	d.onClose(func() { d.cl.Close() })
	d.cl.Disconnected.Connect(func(error) { d.drops.Add(1) })
	return nil
}

// get calls Get through the relay, bounded to 5 s, and reports how long
// it took.
func (d *demo) get(ctx context.Context, name string) (User, time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	u, err := d.users.Get(cctx, name)
	return u, time.Since(start), err
}

// firstCalls lists what the relay offers, looks up the server's manager
// through it as a Users, calls it, and has the server call the client back.
func (d *demo) firstCalls(ctx context.Context) error {
	names, err := d.cl.Registry().List(ctx)
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	d.tr.say("client", "the relay offers %v", names)
	// LookupAs gives the typed stub over a lasting *remote.Ref: it looks
	// "users" up again by itself after an outage.
	if d.users, err = registry.LookupAs[Users](ctx, d.cl.Registry(), "users"); err != nil {
		return fmt.Errorf("lookup: %w", err)
	}
	d.tr.say("client", "looked up users through the relay as a Users: a %T over a %T", d.users, d.users.(remoteable.Stub).TetherCaller())
	u, took, err := d.get(ctx, "alice")
	if err != nil {
		return err
	}
	d.tr.say("client", "Get(alice) through the relay = %+v (%v)", u, took.Round(time.Microsecond))
	hello, err := d.users.Greet(ctx, &greeter{}, "bob")
	if err != nil {
		return fmt.Errorf("greet: %w", err)
	}
	d.tr.say("client", "Greet: %s", hello)
	return nil
}

// followDirectory mirrors the server's directory in the client and sees a
// change of the server's arrive.
func (d *demo) followDirectory(ctx context.Context) error {
	// The client mirrors the server's directory through the relay; the relay
	// keeps one mirror upstream and the client's subscribes to it.
	var err error
	if d.dir, err = directory(ctx, d.users); err != nil {
		return err
	}
	d.onClose(func() { d.dir.Close() })
	d.w = watch(d.dir)
	d.onClose(d.w.close) // runs before dir.Close
	snap, v := d.dir.Snapshot()
	d.tr.say("client", "directory mirror through the relay: v%d [%s] stale=%v", v, entries(snap), d.dir.Stale())
	d.mgr.put("erin", "erin@example.org")
	d.tr.say("server", "directory: set erin (now v%d)", d.mgr.dir.Version())
	ch, err := d.w.nextChange(ctx)
	if err != nil {
		return err
	}
	d.tr.say("client", "directory change arrived: %s", describe(ch))
	d.before = d.dir.Version()
	return nil
}

// cutLink cuts the link between the relay and the server, waits for the
// relay to notice and the client's mirror to go stale, and shows calls
// failing fast meanwhile.
func (d *demo) cutLink(ctx context.Context) error {
	d.tr.say("proxy", "--- cutting the server-relay link (reset, refusing new connections) ---")
	d.link.Refuse(true)
	d.link.Reset()
	for d.up.State() != remote.Waiting {
		if !d.up.WaitForStateChange(ctx, d.up.State()) {
			return errors.New("the relay never noticed the cut")
		}
	}
	ev, err := d.w.next(ctx)
	if err != nil {
		return err
	}
	if ev.stale == nil || !*ev.stale {
		return fmt.Errorf("expected the directory mirror to go stale, got %+v", ev)
	}
	d.tr.say("client", "directory mirror went stale at v%d (Stale()=%v) while the client's own link is %v", d.dir.Version(), d.dir.Stale(), d.cl.State())
	for i := 0; i < 3; i++ {
		_, took, err := d.get(ctx, "carol")
		if err == nil {
			return errors.New("a call went through during the outage")
		}
		d.tr.say("client", "Get(carol) failed in %v: %v (ErrDisconnected: %v)", took.Round(time.Microsecond), err, errors.Is(err, remote.ErrDisconnected))
	}
	return nil
}

// changeDuringOutage changes the server's directory while the client's
// mirror cannot follow, and shows that the relay itself still answers.
func (d *demo) changeDuringOutage(ctx context.Context) error {
	d.mgr.put("carol", "carol@example.org")
	d.mgr.dir.Delete("bob")
	d.mgr.put("alice", "alice@example.net")
	d.tr.say("server", "during the outage: set carol, delete bob, set alice = alice@example.net (now v%d)", d.mgr.dir.Version())
	missed := d.mgr.dir.Version() - d.dir.Version()
	d.tr.say("client", "directory mirror still at v%d, stale=%v: it has missed %d changes", d.dir.Version(), d.dir.Stale(), missed)
	h, err := registry.LookupAs[Hops](ctx, d.cl.Registry(), "hops")
	if err != nil {
		return err
	}
	where, err := h.Where(ctx)
	if err != nil {
		return err
	}
	d.tr.say("client", "the relay's own manager still answers: %q; client link state: %v", where, d.cl.State())
	return nil
}

// restoreLink restores the link and waits for the client's mirror to catch
// up with what it missed.
func (d *demo) restoreLink(ctx context.Context) error {
	d.tr.say("proxy", "--- restoring the link ---")
	restored := time.Now()
	d.link.Restore()
	if err := d.up.WaitConnected(ctx); err != nil {
		return err
	}
	d.tr.say("relay", "upstream back after %v", time.Since(restored).Round(time.Millisecond))
	replayed, err := d.catchUp(ctx)
	if err != nil {
		return err
	}
	if isReplay(replayed, d.before) {
		d.tr.say("client", "the %d missed changes were replayed from the server's log, one version each (v%d..v%d)",
			len(replayed), d.before+1, d.dir.Version())
	} else {
		d.tr.say("client", "the mirror was resynchronised from a snapshot: %d differences at v%d", len(replayed), d.dir.Version())
	}
	return nil
}

// catchUp prints the mirror's events until it is live again and at the
// server's version, and returns the changes it received.
func (d *demo) catchUp(ctx context.Context) ([]cache.Change[string, User], error) {
	// The relay's mirror resumes upstream from (epoch, version) and passes
	// what it gets on: the client's mirror receives the missed changes, then
	// goes live again.
	target := d.mgr.dir.Version()
	var replayed []cache.Change[string, User]
	for live := false; !live || d.dir.Version() < target; {
		ev, err := d.w.next(ctx)
		if err != nil {
			return nil, fmt.Errorf("after the outage (mirror at v%d, server at v%d): %w", d.dir.Version(), target, err)
		}
		if ev.stale != nil {
			live = !*ev.stale
			if live {
				d.tr.say("client", "directory mirror live again at v%d (Stale()=%v)", d.dir.Version(), d.dir.Stale())
			}
			continue
		}
		replayed = append(replayed, ev.change)
		d.tr.say("client", "missed change arrived: %s", describe(ev.change))
	}
	return replayed, nil
}

// verify calls through the same reference again and checks that the
// client's mirror equals the server's model and that the client's own link
// never dropped.
func (d *demo) verify(ctx context.Context) error {
	u, took, err := d.get(ctx, "dave")
	if err != nil {
		return fmt.Errorf("after the outage: %w", err)
	}
	d.tr.say("client", "the same reference again: Get(dave) = %+v (%v)", u, took.Round(time.Microsecond))

	want, wantV := d.mgr.dir.Snapshot()
	got, gotV := d.dir.Snapshot()
	if !maps.Equal(got, want) || gotV != wantV || d.dir.Epoch() != d.mgr.dir.Epoch() {
		d.tr.say("check", "MISMATCH: client mirror v%d [%s], server model v%d [%s]", gotV, entries(got), wantV, entries(want))
		return errors.New("the client's mirror differs from the server's model")
	}
	d.tr.say("check", "client mirror == server model: v%d [%s], same epoch", gotV, entries(got))
	d.tr.say("summary", "server handled %d Get calls; the client's own connection dropped %d times",
		d.mgr.calls.Load(), d.drops.Load())
	if d.drops.Load() != 0 {
		return errors.New("the client's connection dropped")
	}
	return nil
}

// isReplay reports whether changes are a replay of the changes after
// version from: one change per version, in order. After a snapshot the
// differences all carry the snapshot's version instead.
func isReplay(changes []cache.Change[string, User], from uint64) bool {
	if len(changes) == 0 {
		return false
	}
	for i, c := range changes {
		if c.Version != from+uint64(i)+1 {
			return false
		}
	}
	return true
}

// runServer is the server role: it publishes the manager and changes its
// directory every two seconds, until interrupted.
func runServer(ctx context.Context, tr *transcript, listen string) error {
	mgr := newUsers()
	reg := registry.New()
	if err := reg.Register("users", mgr); err != nil {
		return err
	}
	addr, stop, err := serve(reg, listen, "server")
	if err != nil {
		return err
	}
	defer stop()
	tr.say("server", "publishing %v on %s; interrupt to stop", reg.Names(), addr)
	// Give the clients' directory mirrors something to follow: a guest
	// comes and goes every two seconds.
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
		if !mgr.dir.Delete("guest") {
			mgr.put("guest", "guest@example.org")
		}
		tr.say("server", "directory now at v%d", mgr.dir.Version())
	}
}

// runRelay is the relay role: it republishes upstream's registry until
// interrupted.
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

// runClient calls the server through the relay at upstream every second
// and prints what its directory mirror sees, until interrupted.
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
	c := &standaloneClient{tr: tr, cl: cl}
	defer c.close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.round(cctx)
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

// standaloneClient is what the client role keeps between rounds: the
// manager and the directory mirror, obtained once each (both survive
// outages).
type standaloneClient struct {
	tr    *transcript
	cl    *remote.Client
	users Users
	dir   *DirectoryMirror
}

// round makes one round: look up the manager and mirror the directory if
// not done yet, then call Get.
func (c *standaloneClient) round(ctx context.Context) error {
	if err := c.obtain(ctx); err != nil {
		return err
	}
	start := time.Now()
	u, err := c.users.Get(ctx, "alice")
	if err != nil {
		return err
	}
	c.tr.say("client", "Get(alice) = %+v (%v)", u, time.Since(start).Round(time.Microsecond))
	return nil
}

// obtain looks up the manager and mirrors the directory, each the first
// time it succeeds, and prints what the mirror sees from then on.
func (c *standaloneClient) obtain(ctx context.Context) error {
	var err error
	if c.users == nil {
		if c.users, err = registry.LookupAs[Users](ctx, c.cl.Registry(), "users"); err != nil {
			return err
		}
	}
	if c.dir != nil {
		return nil
	}
	if c.dir, err = directory(ctx, c.users); err != nil {
		return err
	}
	snap, v := c.dir.Snapshot()
	c.tr.say("client", "directory mirror: v%d [%s]", v, entries(snap))
	c.dir.Changed.Connect(func(ch cache.Change[string, User]) { c.tr.say("client", "directory: %s", describe(ch)) })
	c.dir.StaleChanged.Connect(func(stale bool) { c.tr.say("client", "directory mirror stale=%v", stale) })
	return nil
}

// close closes the directory mirror, if there is one.
func (c *standaloneClient) close() {
	if c.dir != nil {
		c.dir.Close()
	}
}
