package broker

// Hostile peers: each test here plays a peer that abuses the protocol or
// the server's resources, over real TCP on loopback, and checks three
// things:
//
//   - the hostile peer gets a typed error, or is disconnected within a
//     bound (the configured timeout plus hpSlack: generous on purpose,
//     since these tests check that the server deals with the peer at all,
//     not how fast);
//   - the server keeps serving a well-behaved client;
//   - how much the attack slows that client down: the median latency of
//     hpCalls calls of Add, before and during the attack, is reported with
//     t.Logf (grep the output for "latency under attack"). It is reported,
//     never asserted: timings on a shared machine are not a test.
//
// The hostile peer speaks the wire by hand (hpPeer, like rawPeer in
// hostile_test.go, but usable from the attack's own goroutines: its
// methods return errors instead of failing the test).
//
// These tests found library bugs, since fixed (hpBug, below, names them): a
// test that runs into one again fails naming it.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

const (
	// hpSlack is added to a configured timeout to bound how long the server
	// may take to deal with a hostile peer. It is large because the tests
	// run under the race detector on busy machines.
	hpSlack = 10 * time.Second
	// hpCalls is how many calls the well-behaved client makes to measure
	// its median latency, unless they take longer than hpBudget in all: an
	// attack that slows the server down a hundredfold would otherwise
	// stretch a test to minutes.
	hpCalls  = 200
	hpBudget = 15 * time.Second
)

// Errors a round or the measurement returns, so that a failure can be
// matched against a known bug (hpBug).
var (
	// errHpTimeout marks a wait that ran out.
	errHpTimeout = errors.New("timed out")
	// errHpNoGoodbye marks a server that hung up without saying why.
	errHpNoGoodbye = errors.New("hung up without a Goodbye")
)

// Known library bugs these tests run into; see the comments where they are
// used.
const (
	hpBugYamuxSpin = "yamux v0.1.2 Stream.Read spins while its session shuts down " +
		"(hashicorp/yamux#176): a closing connection's readers of idle message streams " +
		"burn CPU until Session.Close force-closes them, and under a stream of such " +
		"peers the server starves its well-behaved clients (fixed by Conn.wakeStreams)"
	hpBugGoodbyeSkipped = "sender.tryFinal skips the Goodbye when the main stream is " +
		"busy at that instant (a Return still being written), instead of waiting up " +
		"to its 200 ms for it to become idle (fixed in tryFinal)"
)

// hpMeasure returns the median latency of hpCalls sequential calls of Add
// on c (fewer if they exceed hpBudget), and how many it made: the
// well-behaved client's view of the server. Every call must succeed within
// hpSlack, which is the check that the server still serves it.
func hpMeasure(c *Conn) (time.Duration, int, error) {
	lat := make([]time.Duration, 0, hpCalls)
	budget := time.Now().Add(hpBudget)
	for i := 0; i < hpCalls && (i == 0 || time.Now().Before(budget)); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), hpSlack)
		start := time.Now()
		n, err := Call[int](ctx, c.Root(), "Add", i, 1)
		lat = append(lat, time.Since(start))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", errHpTimeout, err)
		}
		if err != nil {
			return 0, i, fmt.Errorf("the well-behaved client's call %d failed: %w", i, err)
		}
		if n != i+1 {
			return 0, i, fmt.Errorf("the well-behaved client's call %d returned %d, want %d", i, n, i+1)
		}
	}
	slices.Sort(lat)
	return lat[len(lat)/2], len(lat), nil
}

// hpMedianAdd is hpMeasure for the test's goroutine, before an attack.
func hpMedianAdd(t *testing.T, c *Conn) time.Duration {
	t.Helper()
	d, _, err := hpMeasure(c)
	require.NoError(t, err)
	return d
}

// hpReport logs the well-behaved client's latency before and during an
// attack.
func hpReport(t *testing.T, attack string, before, during time.Duration, calls int, rounds int64) {
	t.Helper()
	t.Logf("latency under attack %q: median Add %v before, %v during (%d calls, %d hostile rounds): ratio %.2f",
		attack, before, during, calls, rounds, float64(during)/float64(before))
}

// hpAttack plays a hostile peer once and checks what the server did about
// it. It runs in a goroutine of hpUnderAttack's, so it returns what went
// wrong instead of failing the test.
type hpAttack func(worker, round int) error

// hpResult is what hpUnderAttack saw.
type hpResult struct {
	during time.Duration // the well-behaved client's median latency
	calls  int           // the calls it is the median of
	rounds int64         // hostile rounds played
	errs   []error       // failed rounds, and the well-behaved client's failure
}

// hpUnderAttack runs attack in workers goroutines, round after round, while
// it measures the well-behaved client's median latency; then it stops the
// workers and waits for the rounds in progress to finish (each round checks
// its own peer to the end). It does not fail the test: check does.
func hpUnderAttack(good *Conn, workers int, attack hpAttack) hpResult {
	stop := make(chan struct{})
	var (
		rounds atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		res    hpResult
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; ; r++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := attack(w, r); err != nil {
					mu.Lock()
					res.errs = append(res.errs, fmt.Errorf("worker %d, round %d: %w", w, r, err))
					mu.Unlock()
					return
				}
				rounds.Add(1)
			}
		}()
	}
	// Let the attackers get going, so that the measurement sees the attack
	// rather than its start.
	time.Sleep(20 * time.Millisecond)
	during, calls, err := hpMeasure(good)
	close(stop)
	wg.Wait()
	if err != nil {
		res.errs = append(res.errs, err)
	}
	res.during, res.calls, res.rounds = during, calls, rounds.Load()
	return res
}

// hpBug is a known library bug: errors that match err are its symptoms.
type hpBug struct {
	err  error
	desc string
}

// check reports the attack's latency (when it was measured), fails the
// test for every error that no known bug explains, and skips it, naming the
// bug, when known bugs explain all of them.
func (r hpResult) check(t *testing.T, attack string, before time.Duration, bugs ...hpBug) {
	t.Helper()
	if r.calls > 0 {
		hpReport(t, attack, before, r.during, r.calls, r.rounds)
	}
	var hit []string
	for _, err := range r.errs {
		known := false
		for _, b := range bugs {
			if errors.Is(err, b.err) {
				known = true
				if !slices.Contains(hit, b.desc) {
					hit = append(hit, b.desc)
				}
			}
		}
		if !known {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(hit) > 0 {
		for _, err := range r.errs {
			t.Log(err)
		}
		t.Fatalf("a fixed bug is back: %s (%d of the errors above)", strings.Join(hit, "; "), len(r.errs))
	}
}

// hpTimeout marks a network timeout with errHpTimeout.
func hpTimeout(err error) error {
	if isTimeout(err) {
		return fmt.Errorf("%w: %w", errHpTimeout, err)
	}
	return err
}

// hpMax raises *m to d if d is larger.
func hpMax(m *atomic.Int64, d int64) {
	for {
		old := m.Load()
		if d <= old || m.CompareAndSwap(old, d) {
			return
		}
	}
}

// hpMsg is what the hostile peer makes of a message from the server.
type hpMsg struct {
	typ  uint64
	id   uint64 // the call id of a Return or Fail
	err  error  // the error a Fail, Reject or Goodbye carries
	ref  uint64 // a Return's result, when it is a sender reference
	size int    // a Return's result length, when it is a byte string (else -1)
}

func (m hpMsg) String() string {
	return fmt.Sprintf("{type %d, id %d, err %v}", m.typ, m.id, m.err)
}

// hpParse decodes a message body from the server.
func hpParse(b []byte) (hpMsg, error) {
	r := cborx.NewReader(b)
	if _, err := r.ReadArray(); err != nil {
		return hpMsg{}, err
	}
	typ, err := r.ReadUint()
	if err != nil {
		return hpMsg{}, err
	}
	m := hpMsg{typ: typ, size: -1}
	switch msgKind(typ) {
	case msgReturn:
		m.id, _ = r.ReadUint()
		h, _ := r.PeekHead()
		switch {
		case h.Major == cborx.MajorTag && h.Arg == tagSenderRef:
			r.ReadHead()
			m.ref, _ = r.ReadUint()
		case h.Major == cborx.MajorBytes:
			p, _ := r.ReadBytes()
			m.size = len(p)
		}
		return m, nil
	case msgFail:
		if m.id, err = r.ReadUint(); err != nil {
			return m, err
		}
	case msgGoodbye, msgReject:
	default:
		return m, nil
	}
	d := decoder{r: r}
	re, err := d.wireError()
	if err != nil {
		return m, err
	}
	m.err = re
	return m, nil
}

// hpFrame prefixes a message body with its length.
func hpFrame(body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

// hpHello is the body of a well-formed Hello from a peer called name.
func hpHello(name string) []byte {
	return body(func(e *encoder) error {
		e.buf = appendHello(e.buf, hello{version: protocolVersion, name: name, token: "", maxMessage: 1 << 22})
		return nil
	})
}

// hpCall is the body of a call without a deadline (callBody in
// fuzz_test.go gives one, which would end a blocking handler).
func hpCall(id, target uint64, method string, args ...any) []byte {
	return body(func(e *encoder) error {
		e.buf = appendCallHead(e.buf, id, target, method, 0, len(args))
		for _, a := range args {
			if err := e.any(a); err != nil {
				return err
			}
		}
		return nil
	})
}

// hpRelease is the body of a Release of n references to object id.
func hpRelease(id, n uint64) []byte {
	return body(func(e *encoder) error {
		e.buf = appendRelease(e.buf, id, n)
		return nil
	})
}

// hpEchoCall is the body of call id to Echo whose byte-string argument
// makes the body exactly size bytes long; it also returns the argument's
// length. The byte string's head grows with its length, so the length is
// found by adjusting until the body fits.
func hpEchoCall(id uint64, size int) ([]byte, int) {
	n := size
	for i := 0; i < 8; i++ {
		b := body(func(e *encoder) error {
			e.buf = appendCallHead(e.buf, id, 0, "Echo", 0, 1)
			e.buf = cborx.AppendBytes(e.buf, make([]byte, n))
			return nil
		})
		if len(b) == size {
			return b, n
		}
		n -= len(b) - size
	}
	panic(fmt.Sprintf("no Echo call of exactly %d bytes", size))
}

// hpPeer is a hostile peer: a yamux session over TCP whose frames are
// written by hand.
type hpPeer struct {
	sess *yamux.Session
	main *yamux.Stream
	fr   *cborx.FrameReader

	msgs     chan hpMsg    // what collect's readers read
	mainDone chan struct{} // closed when the main stream's reader stops
	quit     chan struct{} // closed by close: the readers stop delivering
	wg       sync.WaitGroup
	once     sync.Once
}

// hpConnect opens a TCP connection and a yamux session over it, as a dialer
// does, and sends nothing yet.
func hpConnect(addr string) (*hpPeer, error) {
	nc, err := net.DialTimeout("tcp", addr, hpSlack)
	if err != nil {
		return nil, hpTimeout(err)
	}
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{discardLogger()}
	cfg.EnableKeepAlive = false // the peer still answers the server's pings
	cfg.StreamOpenTimeout = 0
	sess, err := yamux.Client(nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &hpPeer{sess: sess, quit: make(chan struct{}), mainDone: make(chan struct{})}, nil
}

// openMain opens the main stream.
func (p *hpPeer) openMain() error {
	st, err := p.sess.OpenStream()
	if err != nil {
		return err
	}
	p.main = st
	p.fr = cborx.NewFrameReader(st, 1<<22, readBufferSize)
	return nil
}

// hpJoin connects and completes the handshake as a peer called name.
func hpJoin(addr, name string) (*hpPeer, error) {
	p, err := hpConnect(addr)
	if err != nil {
		return nil, err
	}
	if err := p.handshake(name); err != nil {
		p.close()
		return nil, fmt.Errorf("handshake: %w", hpTimeout(err))
	}
	return p, nil
}

func (p *hpPeer) handshake(name string) error {
	if err := p.openMain(); err != nil {
		return err
	}
	if err := p.send(hpHello(name)); err != nil {
		return err
	}
	p.main.SetReadDeadline(time.Now().Add(hpSlack))
	defer p.main.SetReadDeadline(time.Time{})
	b, err := p.fr.Next()
	if err != nil {
		return err
	}
	m, err := hpParse(b)
	if err != nil {
		return err
	}
	if m.typ != uint64(msgWelcome) {
		return fmt.Errorf("want a Welcome, got %v", m)
	}
	return nil
}

// hpJoinT is hpJoin for the test's goroutine; the peer is closed at the end
// of the test.
func hpJoinT(t *testing.T, addr, name string) *hpPeer {
	t.Helper()
	p, err := hpJoin(addr, name)
	require.NoError(t, err)
	t.Cleanup(p.close)
	return p
}

// close ends the session and waits for collect's readers.
func (p *hpPeer) close() {
	p.once.Do(func() {
		close(p.quit)
		p.sess.Close() // closes the TCP connection too
	})
	p.wg.Wait()
}

// write writes raw bytes on the main stream. A write error may only mean
// that the server hung up right after reading them (yamux can report a
// write that went out as failed), so callers that expect a hang-up ignore
// it.
func (p *hpPeer) write(b []byte) error { return hpWriteOn(p.main, b) }

// send writes one frame holding body on the main stream.
func (p *hpPeer) send(body []byte) error { return p.write(hpFrame(body)) }

func hpWriteOn(st *yamux.Stream, b []byte) error {
	st.SetWriteDeadline(time.Now().Add(hpSlack))
	_, err := st.Write(b)
	return err
}

// collect starts reading what the server sends into p.msgs: the main
// stream and, with streams, every message stream the server opens (large
// results come on those).
func (p *hpPeer) collect(streams bool) {
	p.msgs = make(chan hpMsg, 1024)
	p.wg.Add(1)
	go func() {
		defer close(p.mainDone)
		p.readFrames(p.fr)
	}()
	if !streams {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			st, err := p.sess.AcceptStream()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.readFrames(cborx.NewFrameReader(st, 1<<22, readBufferSize))
		}
	}()
}

func (p *hpPeer) readFrames(fr *cborx.FrameReader) {
	defer p.wg.Done()
	for {
		b, err := fr.Next()
		if err != nil {
			return
		}
		m, err := hpParse(b)
		if err != nil {
			m = hpMsg{typ: 255, err: fmt.Errorf("unreadable message from the server: %w", err)}
		}
		select {
		case p.msgs <- m:
		case <-p.quit:
			return
		}
	}
}

// next returns the next message collect read.
func (p *hpPeer) next(within time.Duration) (hpMsg, error) {
	select {
	case m := <-p.msgs:
		return m, nil
	case <-time.After(within):
		return hpMsg{}, fmt.Errorf("%w: no message from the server within %v", errHpTimeout, within)
	}
}

// goodbye waits until the server ends the session and returns the error
// its Goodbye carried (nil if it sent none). err reports a session still up
// after within. The peer must be collecting.
func (p *hpPeer) goodbye(within time.Duration) (bye, err error) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case m := <-p.msgs:
			if m.typ == uint64(msgGoodbye) {
				bye = m.err
			}
		case <-p.mainDone:
			// The main stream ended: whatever it carried has been
			// delivered, and a Goodbye only comes on it.
			for {
				select {
				case m := <-p.msgs:
					if m.typ == uint64(msgGoodbye) {
						bye = m.err
					}
				default:
					return bye, nil
				}
			}
		case <-timer.C:
			return bye, fmt.Errorf("%w: still connected %v later", errHpTimeout, within)
		}
	}
}

// expectGoodbye checks that the server hangs up within the bound after a
// Goodbye that names a protocol violation whose message contains want.
func (p *hpPeer) expectGoodbye(want string) error {
	bye, err := p.goodbye(hpSlack)
	switch {
	case err != nil:
		return err
	case bye == nil:
		return fmt.Errorf("%w (want one saying %q)", errHpNoGoodbye, want)
	case !errors.Is(bye, ErrProtocol):
		return fmt.Errorf("the Goodbye says %v, want a protocol violation", bye)
	case !strings.Contains(bye.Error(), want):
		return fmt.Errorf("the Goodbye says %q, want it to say %q", bye, want)
	}
	return nil
}

// hungUp waits until the server closes the session.
func (p *hpPeer) hungUp(within time.Duration) error {
	select {
	case <-p.sess.CloseChan():
		return nil
	case <-time.After(within):
		return fmt.Errorf("%w: not disconnected within %v", errHpTimeout, within)
	}
}

// hpServerConn returns the server's side of the connection of the peer
// that introduced itself as name. The server registers a connection just
// after sending its Welcome, so it is polled for.
func hpServerConn(srv *Server, name string) (*Conn, error) {
	deadline := time.Now().Add(hpSlack)
	for {
		for _, c := range srv.Conns() {
			if c.Peer().Name == name {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: the server has no connection from %q", errHpTimeout, name)
		}
		time.Sleep(time.Millisecond)
	}
}

// hpDisconnectedWith checks that the server ends its connection c within
// the bound, for the reason want (any, if want is nil).
func hpDisconnectedWith(c *Conn, want error, within time.Duration) error {
	select {
	case <-c.Closed():
	case <-time.After(within):
		return fmt.Errorf("%w: the server kept the connection of %q for %v", errHpTimeout, c.Peer().Name, within)
	}
	if want != nil && !errors.Is(c.Err(), want) {
		return fmt.Errorf("the server ended the connection with %v, want %v", c.Err(), want)
	}
	return nil
}
