package broker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// keepalive finds a silently dead peer (a cable pulled, a black-holed
// route) within the dead-peer timeout T, at little cost on an idle link and
// none on a busy one. It watches how long the connection has heard nothing
// (coalescer.silence, updated by every read of the socket): any byte from
// the peer shows it alive, so a link that carried traffic recently is never
// pinged. After T of silence the connection fails.
//
// Only one side pings an idle link: the dialer after T/2 of silence, the
// acceptor only after 3T/4, which a dialer's pings (and their answers)
// never let it reach. The acceptor's ping covers a dialer that does not
// ping (another implementation) or whose timer ran late. Either way the
// answer has the rest of T to come back.
//
// It runs on one timer (time.AfterFunc), re-armed for the moment the
// silence would reach the next threshold: no goroutine waits per
// connection. A ping is sent from the timer's goroutine, which waits for
// the answer (yamux's Ping) and then exits.
//
// On a healthy idle link the timer fires late, at the next multiple of
// T/16 on a clock shared by every connection (see aligned): the pings of
// many idle connections then go out together, and the process wakes a few
// times per T instead of once per connection and ping, each wake (futex,
// epoll, the scheduler) costing about as much as the ping's own write and
// read. Pings are sent at most T/16 late, which leaves the answer 7T/16;
// the check that ends a silent link is never rounded.
//
// A firing (or a ping's wait) that ends more than T/8 after it was due
// means that this process did not run meanwhile (a machine short of CPU, a
// stopped process, a suspended VM): bytes the peer sent then may still lie
// unread, and the silence is this process's, not the peer's. Such a stall
// is excused: the silence is counted as if it had just reached the ping
// threshold, so a ping goes out at once and the peer has the rest of T to
// answer it. Only one stall is excused until something is heard again,
// so a process that runs late at every firing still finds a dead peer
// (within about 2T plus its lateness).
type keepalive struct {
	co      *coalescer
	sess    *yamux.Session
	timeout time.Duration // T: the silence after which the peer is dead
	pingAt  time.Duration // the silence after which this side pings
	dead    func(error)   // ends the connection; must not block
	tidy    func()        // run at each firing, if not nil; may block until the session ends
	now     func() int64  // monoNow, or a test's clock

	mu        sync.Mutex
	timer     *time.Timer
	due       int64 // when the timer is due to fire: now's reading
	floor     int64 // silence is counted from no earlier than this (an excused stall)
	excusedAt int64 // when a stall was last excused: no other one is until bytes come after it
	stopped   bool
	pinging   bool           // a ping is out, waiting for its answer
	pings     sync.WaitGroup // the goroutine waiting for a ping's answer
	tidying   bool           // a tidy is running
	tidies    sync.WaitGroup // the goroutine running tidy
	sent      atomic.Int64   // pings sent, for tests
}

// startKeepalive arms the keepalive of a connection whose handshake is
// done; dead is called once the peer has been silent for timeout. tidy, if
// not nil, is called each time the timer fires, busy link or idle: every
// pingAt or so (Conn.shrinkStreams), after the silence check and any ping,
// and never twice at once.
func startKeepalive(co *coalescer, sess *yamux.Session, timeout time.Duration, dialer bool, dead func(error), tidy func()) *keepalive {
	return newKeepalive(co, sess, timeout, dialer, dead, tidy).start()
}

// start arms the timer for the first ping, and returns k.
func (k *keepalive) start() *keepalive {
	k.mu.Lock()
	d := k.aligned(k.pingAt)
	k.due = k.now() + int64(d)
	k.timer = time.AfterFunc(d, k.fire)
	k.mu.Unlock()
	return k
}

// newKeepalive returns a keepalive whose timer is not armed yet.
func newKeepalive(co *coalescer, sess *yamux.Session, timeout time.Duration, dialer bool, dead func(error), tidy func()) *keepalive {
	k := &keepalive{co: co, sess: sess, timeout: timeout, pingAt: timeout * 3 / 4, dead: dead, tidy: tidy, now: monoNow}
	if dialer {
		k.pingAt = timeout / 2
	}
	return k
}

// arm re-arms the timer to fire after d. It runs with k.mu held.
func (k *keepalive) arm(d time.Duration) {
	k.due = k.now() + int64(d)
	k.timer.Reset(d)
}

// silence is how long nothing was heard from the peer, not counting a
// stall of this process that was excused. It runs with k.mu held.
func (k *keepalive) silence(now int64) time.Duration {
	return time.Duration(now - max(k.co.lastRead.Load(), k.floor))
}

// excuse forgives a stall of this process found at now, when the timer
// (or a ping's wait) ended late by late, unless one was already excused
// and nothing was heard since: the silence then counts from the ping
// threshold. It reports whether it did. It runs with k.mu held.
func (k *keepalive) excuse(now int64, late time.Duration) bool {
	if late <= k.timeout/8 || k.excusedAt >= k.co.lastRead.Load() && k.excusedAt != 0 {
		return false
	}
	k.floor = max(k.floor, now-int64(k.pingAt))
	k.excusedAt = now
	return true
}

// aligned returns d rounded up so that it ends on a multiple of T/16 of
// monoNow's clock, common to every connection with the same timeout.
func (k *keepalive) aligned(d time.Duration) time.Duration {
	g := int64(k.timeout / 16)
	now := k.now()
	at := now + int64(d)
	at += (g - at%g) % g
	return time.Duration(at - now)
}

// fire runs in the timer's goroutine each time it fires, and pings from
// there when check says so, then tidies.
//
// The check comes first, and the timer is re-armed there, because tidy can
// block: yamux's Stream.Shrink takes the stream's receive lock, which
// yamux's receive loop holds while it reads a data frame's body from the
// socket, so a peer gone silent in the middle of a frame (a black hole
// during a large value) blocks it until the session ends. Tidying first
// kept the timer's goroutine from ever reaching the check that ends such a
// link (TestKeepaliveFindsBlackHoleMidLargeValue); now the next firing, in
// a goroutine of its own, still checks, and skips tidying while one is
// stuck.
func (k *keepalive) fire() {
	if k.check() {
		k.ping()
	}
	k.tidyOnce()
}

// tidyOnce runs tidy unless the keepalive is stopped or a tidy is already
// running; stop waits for it.
func (k *keepalive) tidyOnce() {
	if k.tidy == nil {
		return
	}
	k.mu.Lock()
	if k.stopped || k.tidying {
		k.mu.Unlock()
		return
	}
	k.tidying = true
	k.tidies.Add(1) // under k.mu, with !stopped: stop's Wait comes after
	k.mu.Unlock()
	defer k.tidies.Done()
	k.tidy()
	k.mu.Lock()
	k.tidying = false
	k.mu.Unlock()
}

// check fails the connection, or re-arms the timer for when the silence
// reaches the next threshold; it reports whether to send a ping now.
func (k *keepalive) check() (ping bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return false
	}
	now := k.now()
	silent := k.silence(now)
	if silent >= k.pingAt && k.excuse(now, time.Duration(now-k.due)) {
		silent = k.silence(now) // the ping threshold: ping now
	}
	switch {
	case silent >= k.timeout:
		k.stopped = true
		k.dead(silenceErr(silent))
		return false
	case silent < k.pingAt:
		k.arm(k.aligned(k.pingAt - silent))
		return false
	}
	k.arm(k.timeout - silent) // exact: the silent link's end
	if k.pinging {
		return false
	}
	k.pinging = true
	k.pings.Add(1) // under k.mu, with !stopped: stop's Wait comes after
	k.sent.Add(1)
	return true
}

// ping sends a ping and waits for its answer, which shows as bytes heard.
// An answer that does not come within T/2 (yamux's Ping gives up then) fails
// the connection, as yamux's own keepalive did, even if other bytes arrived
// meanwhile: over a stream transport a lost answer means lost bytes, and a
// link that loses bytes may have lost frames (a window update, a pushed
// result) that nothing would ever resend, leaving a stream stalled on a link
// that looks alive.
func (k *keepalive) ping() {
	defer k.pings.Done()
	start := k.now()
	_, err := k.sess.Ping() // returns at the answer, after T/2, or when the session ends
	k.mu.Lock()
	defer k.mu.Unlock()
	k.pinging = false
	now := k.now()
	if err == nil && !k.stopped {
		// Answered: the timer, armed for the link's end, is moved to
		// the next ping instead of firing once more in between.
		k.arm(k.aligned(k.pingAt - k.silence(now)))
		return
	}
	if err == nil || k.stopped || k.sess.IsClosed() || errors.Is(err, yamux.ErrSessionShutdown) {
		return
	}
	if errors.Is(err, yamux.ErrTimeout) && k.excuse(now, time.Duration(now-start)-k.timeout/2) {
		// The wait ended late: this process stalled, and the answer
		// may lie unread. Check (and ping) again at once.
		k.arm(0)
		return
	}
	k.stopped = true
	k.timer.Stop()
	k.dead(k.noAnswer(err))
}

// noAnswer says why a ping that got no answer ends the link. When nothing
// at all arrived while it waited, the link was silent for about the whole
// timeout, and check's description (heard nothing) fits, whichever of the
// two noticed first; otherwise bytes came but not the answer.
func (k *keepalive) noAnswer(err error) error {
	if silent := k.silence(k.now()); silent >= k.timeout/2 {
		return silenceErr(silent)
	}
	return fmt.Errorf("tether: no answer to a keepalive ping within %v: %v: %w",
		k.timeout/2, err, yamux.ErrKeepAliveTimeout)
}

// silenceErr is the error of a link on which nothing was heard for silent.
func silenceErr(silent time.Duration) error {
	return fmt.Errorf("tether: peer stopped answering keepalives: heard nothing for %v: %w",
		silent.Round(time.Millisecond), yamux.ErrKeepAliveTimeout)
}

// stop disarms the keepalive and waits for a ping in flight, and a tidy,
// to return. Call it after the session is closed, which ends such a ping at
// once and unblocks a tidy waiting on a stream's receive lock.
func (k *keepalive) stop() {
	k.mu.Lock()
	k.stopped = true
	k.timer.Stop()
	k.mu.Unlock()
	k.pings.Wait()
	k.tidies.Wait()
}
