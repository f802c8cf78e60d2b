package feed

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// seenSink is an intSink that tells, without its feed's lock, the version
// of the last batch its mirror committed, so that a test can watch the
// mirror without taking a lock whose unlock would publish a pending tail
// (Feed.unlock) and so heal the lost wakeup it looks for.
type seenSink struct {
	intSink
	f    atomic.Pointer[Feed]
	seen atomic.Uint64
}

func (s *seenSink) Commit(events []Event, reset bool) {
	s.intSink.Commit(events, reset)
	if f := s.f.Load(); f != nil {
		s.seen.Store(f.VersionLocked()) // Commit runs with f.mu held
	}
}

// TestLastChangeArrivesAfterEveryBurst looks for a lost wakeup in the lazy
// tail (Feed.publish, Feed.unlock, Subscription.await): a burst of changes
// to each of many feeds, every feed followed by five mirrors on their own
// connections and a sixth behind the first (a relay), then quiet, after
// which every mirror must reach the burst's last version. While a burst
// runs, and for a few holds after it, other callers hold each feed's lock
// (Subscribers, Epoch, Deletes of absent keys, Reads that hold it a few
// microseconds), so that a pusher's TryLock fails against holders other
// than the writer. Nothing touches a feed's lock once those end: the
// last version is the one its last Set returned, and the mirrors are
// watched through their sinks, since any unlock of the feed would publish
// the pending tail for a waiting pusher and hide the loss.
//
// More Ps than the machine's cores let the OS preempt a pusher's thread
// between its steps, which widens the windows looked for: with await
// made never to publish a pending tail itself, 8 Ps on 2 cores failed 1
// run in 8 (of 300 rounds); 4 Ps, none in 4. With Feed.unlock made not
// to publish for a waiting pusher it failed within the first runs.
func TestLastChangeArrivesAfterEveryBurst(t *testing.T) {
	leakcheck.Check(t)
	if runtime.GOMAXPROCS(0) < 8 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	}
	const mirrorsPerFeed = 6 // the last behind the first, a relay
	feeds, rounds := 12, 300
	if raceEnabled {
		feeds, rounds = 6, 60
	}
	ctx := testkit.Ctx(t, 5*time.Minute)
	type followed struct {
		src   *Feed
		sinks []*seenSink
	}
	all := make([]followed, feeds)
	for i := range all {
		src := New(0, nil)
		dial := serveFeed(t, src)
		fd := followed{src: src}
		var mid *Follower
		for j := range mirrorsPerFeed {
			sink := &seenSink{intSink: intSink{state: map[string]int{}}}
			var fl *Follower
			if j < mirrorsPerFeed-1 {
				fl = NewFollower(dial(), sink, Options{})
			} else {
				fl = NewFollower(serveFeed(t, mid.Feed())(), sink, Options{})
			}
			sink.f.Store(fl.Feed())
			require.NoError(t, fl.Attach(ctx))
			t.Cleanup(fl.Close)
			if j == 0 {
				mid = fl
			}
			fd.sinks = append(fd.sinks, sink)
		}
		all[i] = fd
	}

	for r := range rounds {
		last := make([]uint64, feeds)
		var wg sync.WaitGroup
		for i, fd := range all {
			stop := make(chan struct{})
			wg.Add(2)
			go func() { // other holders of the feed's lock, during and just after the burst
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(r), uint64(i)+1<<32))
				after := -1
				for n := 0; after != 0; n++ {
					if after < 0 {
						select {
						case <-stop:
							after = rng.IntN(30) // holds after the last change
						default:
						}
					} else {
						after--
					}
					switch n % 4 {
					case 0:
						fd.src.Subscribers()
					case 1:
						fd.src.Epoch()
					case 2:
						fd.src.Delete(enc("absent")) // not a change
					default:
						// A hold of a few microseconds, which a pusher's
						// TryLock may meet as it comes back from a batch.
						fd.src.Read(func(string, uint64, State) { spin(rng.IntN(4000)) })
					}
					runtime.Gosched()
				}
			}()
			go func() {
				defer wg.Done()
				defer close(stop)
				rng := rand.New(rand.NewPCG(uint64(r), uint64(i)))
				for j := range rng.IntN(40) + 1 {
					k := enc(fmt.Sprint("k", rng.IntN(9)))
					if j%5 == 4 {
						if ev, ok := fd.src.Delete(k); ok {
							last[i] = ev.Version
						}
						continue
					}
					last[i] = fd.src.Set(k, enc(r*100+j)).Version
					if rng.IntN(4) == 0 {
						runtime.Gosched()
					}
				}
				if last[i] == 0 { // only deletes of absent keys: one Set
					last[i] = fd.src.Set(enc("k0"), enc(r)).Version
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(testkit.Patience)
		for {
			var behind []string
			for i, fd := range all {
				for j, s := range fd.sinks {
					if v := s.seen.Load(); v < last[i] {
						behind = append(behind, fmt.Sprintf("feed %d mirror %d at %d of %d", i, j, v, last[i]))
					}
				}
			}
			if len(behind) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %v after the burst, with no change since, mirrors never got the last change: %s",
					r, testkit.Patience, strings.Join(behind, "; "))
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i, fd := range all {
		want := entriesOf(fd.src)
		for j, s := range fd.sinks {
			got := map[string]string{}
			for k, v := range s.state {
				got[string(enc(k))] = string(enc(v))
			}
			require.Equal(t, want, got, "feed %d mirror %d", i, j)
		}
	}
}

// spin runs for about n nanoseconds without yielding.
func spin(n int) {
	for start := time.Now(); time.Since(start) < time.Duration(n); {
	}
}
