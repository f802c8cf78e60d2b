package remote

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

func TestBackoffShape(t *testing.T) {
	mid := func() float64 { return 0.5 } // no jitter
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	var got []time.Duration
	for n := 0; n < 6; n++ {
		got = append(got, b.delay(n, mid))
	}
	assert.Equal(t, []time.Duration{100, 200, 400, 800, 1000, 1000}, scale(got, time.Millisecond), "doubles, then capped")

	lo, hi := b.delay(2, func() float64 { return 0 }), b.delay(2, func() float64 { return 0.999999 })
	assert.InDelta(t, float64(320*time.Millisecond), float64(lo), float64(time.Millisecond), "-20%")
	assert.InDelta(t, float64(480*time.Millisecond), float64(hi), float64(time.Millisecond), "+20%")

	def := Backoff{}.withDefaults()
	assert.Equal(t, Backoff{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 1.6, Jitter: 0.5}, def,
		"a zero Backoff means the defaults, never a busy loop")
}

func scale(ds []time.Duration, unit time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d / unit
	}
	return out
}

// fakeClock hands out timers the test fires by hand and records the delays
// asked for.
type fakeClock struct {
	mu     sync.Mutex
	asked  []time.Duration
	timers chan chan time.Time
}

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	f.mu.Lock()
	f.asked = append(f.asked, d)
	f.mu.Unlock()
	ch := make(chan time.Time, 1)
	f.timers <- ch
	return ch
}

func (f *fakeClock) delays() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.asked...)
}

// fakeClockClient returns a client of an address nothing listens on yet,
// whose dial loop waits on a fake clock (backoff 10 ms doubling to 80 ms,
// no jitter), that clock, and the address, for a test to start a server
// on when it likes. The client is closed at the test's end.
func fakeClockClient(t *testing.T) (*Client, *fakeClock, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet
	clk := &fakeClock{timers: make(chan chan time.Time, 100)}
	cl, err := Connect(context.Background(), "tcp", addr,
		WithBackoff(Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2}),
		WithDialTimeout(time.Second),
		withClock(clk, func() float64 { return 0.5 }))
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	return cl, clk, addr
}

// connectOnFourthAttempt lets cl's first three attempts fail (waiting 10,
// 20 and 40 ms on clk), then starts a server on addr, so that the fourth
// attempt connects, and waits until it has.
func connectOnFourthAttempt(t *testing.T, cl *Client, clk *fakeClock, addr string) *server {
	t.Helper()
	(<-clk.timers) <- time.Now() // 10 ms
	(<-clk.timers) <- time.Now() // 20 ms
	pending := <-clk.timers
	s := startServer(t, addr, publish(t, newUsers("x")))
	pending <- time.Now() // after 40 ms: connects
	require.NoError(t, cl.WaitConnected(testkit.Ctx(t, time.Minute)))
	return s
}

// TestDialLoopBacksOffAndStartsOverAfterSuccess drives the dial loop with a
// fake clock: the delays grow while the server is away, and after a
// successful connection drops, they start from the initial delay again.
func TestDialLoopBacksOffAndStartsOverAfterSuccess(t *testing.T) {
	leakcheck.Check(t)
	cl, clk, addr := fakeClockClient(t)
	fire := func() { (<-clk.timers) <- time.Now() }
	for i := 0; i < 5; i++ {
		fire() // each failed attempt waits on the clock; the test decides when
	}
	pending := <-clk.timers // the sixth wait
	assert.Equal(t, []time.Duration{10, 20, 40, 80, 80, 80}, scale(clk.delays(), time.Millisecond))
	assert.Equal(t, Waiting, cl.State())

	// The server comes up; when the wait ends the next attempt succeeds.
	s := startServer(t, addr, publish(t, newUsers("x")))
	pending <- time.Now()
	require.NoError(t, cl.WaitConnected(testkit.Ctx(t, time.Minute)))

	// The link stays up for the backoff period (6 failures: the cap): it
	// is steady.
	steady := <-clk.timers
	assert.Equal(t, 80*time.Millisecond, last(clk.delays()), "a link is steady after the backoff period")
	steady <- time.Now()

	// The connection drops and the server stays away: the loop redials at
	// once, fails, and waits the initial delay again.
	s.stop()
	<-clk.timers
	assert.Equal(t, 10*time.Millisecond, last(clk.delays()), "backoff starts over after a steady link")
}

func last(ds []time.Duration) time.Duration { return ds[len(ds)-1] }

// TestShortLinkDoesNotResetBackoff drives the dial loop with a fake clock:
// a link that ends before it has been up for the backoff period counts as
// a failed attempt, so the wait after it is the grown delay, not the
// initial one; Connected and Disconnected still fire for it.
func TestShortLinkDoesNotResetBackoff(t *testing.T) {
	leakcheck.Check(t)
	cl, clk, addr := fakeClockClient(t)
	tr := watch(cl)

	s := connectOnFourthAttempt(t, cl, clk, addr)
	<-clk.timers // the steady timer, never fired: the link is short

	s.stop()
	<-clk.timers // the wait after the short link
	assert.Equal(t, []time.Duration{10, 20, 40, 80, 80}, scale(clk.delays(), time.Millisecond),
		"after a short link the loop waits the grown delay (80 ms), not the initial one")
	assert.Equal(t, Waiting, cl.State(), "calls fail fast meanwhile")
	c, d := tr.counts()
	assert.Equal(t, 1, c)
	assert.Equal(t, 1, d)
}

// TestRefusalWaitsTheCapWithAConstantBackoff: with Multiplier 1 (a
// constant backoff, Initial below Max) a refused attempt waits Max as
// documented. It waited Initial, after a loop of 2^30 multiplications by
// 1 (about a second of CPU per refusal) that never reached the cap.
func TestRefusalWaitsTheCapWithAConstantBackoff(t *testing.T) {
	mid := func() float64 { return 0.5 } // no jitter
	b := Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 1}.withDefaults()
	assert.Equal(t, 20*time.Millisecond, b.delay(5, mid), "a failed attempt waits Initial")
	assert.Equal(t, 200*time.Millisecond, b.delay(atCap, mid), "a refused one waits Max")
}

// TestLateSteadyTimerLooksAgain drives the dial loop with a fake clock
// through a stall of this process: the timer that would make the link
// steady is delivered late (the test holds it past its time), as when the
// process did not run, and the link's end may lie unread. The link is not
// judged steady on that firing but looked at again a quarter of the cap
// later: ended by then, it was short (the backoff does not start over);
// still up, it is steady. (TestAcceptThenDropIsNoStorm/after_70ms saw a
// link dropped after 70 ms judged steady under load, and the client
// redialled at once.)
func TestLateSteadyTimerLooksAgain(t *testing.T) {
	for _, endsMeanwhile := range []bool{true, false} {
		t.Run(map[bool]string{true: "ends before the second look", false: "up at the second look"}[endsMeanwhile], func(t *testing.T) {
			leakcheck.Check(t)
			cl, clk, addr := fakeClockClient(t)
			s := connectOnFourthAttempt(t, cl, clk, addr)

			steady := <-clk.timers                                  // 80 ms, the cap
			time.Sleep(80*time.Millisecond + 80*time.Millisecond/4) // the process "stalls" past it
			steady <- time.Now()
			var again chan time.Time
			select {
			case again = <-clk.timers:
			case <-time.After(10 * time.Second):
				t.Fatal("a late firing made the link steady at once, without looking again")
			}
			assert.Equal(t, []time.Duration{10, 20, 40, 80, 20}, scale(clk.delays(), time.Millisecond),
				"a late firing looks again a quarter of the cap later")
			if endsMeanwhile {
				s.stop()
				<-clk.timers // the wait after the link
				assert.Equal(t, 80*time.Millisecond, last(clk.delays()), "a link that ended by the second look was short")
				return
			}
			again <- time.Now()
			s.stop()
			<-clk.timers // redialled at once, failed, and waits
			assert.Equal(t, 10*time.Millisecond, last(clk.delays()), "a link up at the second look was steady")
		})
	}
}
