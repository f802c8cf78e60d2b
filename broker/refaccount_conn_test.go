package broker

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// These tests guard the pooled per-message reference accounting
// (refAccount), the import table's entries held by value and the handles'
// cleanups over real connections: whatever a message carries — one id many
// times, more ids than the account searches in order, roots among them,
// a value that fails to decode halfway — every reference the exporter
// handed out comes back exactly once, none before its last handle goes
// (the exporter would drop the object, or end the connection for a
// release of more than it handed out), and each handle stays the object
// it was made for while other messages reuse the pooled accounts.

// idObj is an object that tells which one it is.
type idObj struct {
	remoteable.Referenceable
	id int
}

func (o *idObj) ID() (int, error) { return o.id, nil }

// refBox hands out and takes many references in one message.
type refBox struct {
	remoteable.Referenceable
}

// refList lists distinct fresh objects, numbered from base, repeat times
// over (the same object under the same id each time), with the root after
// each one when roots is set.
func refList(root any, base, distinct, repeat int, roots bool) []any {
	objs := make([]*idObj, distinct)
	for i := range objs {
		objs[i] = &idObj{id: base + i}
	}
	var out []any
	for range repeat {
		for _, o := range objs {
			out = append(out, o)
			if roots {
				out = append(out, root)
			}
		}
	}
	return out
}

// Many returns refList's objects.
func (b *refBox) Many(base, distinct, repeat int, roots bool) ([]any, error) {
	return refList(b, base, distinct, repeat, roots), nil
}

// ManyThenBad returns refList's objects with a string in the middle, which
// no reference can be decoded from.
func (b *refBox) ManyThenBad(base, distinct, repeat int) ([]any, error) {
	l := refList(b, base, distinct, repeat, true)
	mid := len(l) / 2
	return append(append(l[:mid:mid], "not a reference"), l[mid:]...), nil
}

// IDs asks each of refs which object it is, then releases every handle it
// was given.
func (b *refBox) IDs(ctx context.Context, refs []*Ref) ([]int, error) {
	ids := make([]int, len(refs))
	for i, r := range refs {
		if r.id == 0 {
			ids[i] = -1 // the caller's root
			continue
		}
		var err error
		if ids[i], err = Call[int](ctx, r, "ID"); err != nil {
			return nil, err
		}
	}
	for _, r := range refs {
		r.Release()
	}
	return ids, nil
}

// wantIDs is the ID each element of refList answers, -1 for a root.
func wantIDs(base, distinct, repeat int, roots bool) []int {
	var want []int
	for range repeat {
		for i := range distinct {
			want = append(want, base+i)
			if roots {
				want = append(want, -1)
			}
		}
	}
	return want
}

// refShapes are messages with one id, a few, exactly as many as the
// account searches in order, one more, and many; each id repeated, and
// roots among them or not.
var refShapes = []struct{ distinct, repeat int }{{1, 1}, {1, 7}, {3, 2}, {refAccountScan, 3}, {refAccountScan + 1, 2}, {40, 3}}

// TestResultReferencesComeBackExactlyOnce receives results carrying many
// references and checks that the exporter keeps each object until its
// last handle is released, then drops it, and never sees a release of
// more than it handed out.
func TestResultReferencesComeBackExactlyOnce(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	c := dial(t, addr)
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	for _, sh := range refShapes {
		for _, roots := range []bool{false, true} {
			name := fmt.Sprintf("%d ids x %d, roots %v", sh.distinct, sh.repeat, roots)
			refs, err := Call[[]*Ref](ctx, c.Root(), "Many", 1000, sh.distinct, sh.repeat, roots)
			require.NoError(t, err, name)
			require.Len(t, refs, len(wantIDs(1000, sh.distinct, sh.repeat, roots)), name)
			assert.Equal(t, 1+sh.distinct, sc.Stats().Exports, name)
			assert.Equal(t, sh.distinct, c.Stats().Imports, name)

			// Release every handle but the last to each object: the
			// object must still be there, and be the one it was.
			last := map[uint64]*Ref{}
			for _, r := range refs {
				if prev := last[r.id]; prev != nil {
					prev.Release()
				}
				last[r.id] = r
			}
			for id, r := range last {
				if id == 0 {
					continue
				}
				_, err := Call[int](ctx, r, "ID")
				require.NoError(t, err, "%s: object %d, its last handle", name, id)
			}
			require.Equal(t, 1+sh.distinct, sc.Stats().Exports, "%s: nothing dropped early", name)
			for _, r := range last {
				r.Release()
			}
			testkit.Eventually(t, name+": every object dropped", func() bool { return sc.Stats().Exports == 1 })
			assert.Equal(t, 0, c.Stats().Imports, name)
		}
	}
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}

// TestUnwantedResultReferencesComeBack makes calls whose results carry
// many references the caller never takes: a call with no reply, and one
// whose reply fails to decode halfway, after some handles were made and
// before others. The exporter must get every reference back exactly once.
func TestUnwantedResultReferencesComeBack(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	c := dial(t, addr)
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	for _, sh := range refShapes {
		name := fmt.Sprintf("%d ids x %d", sh.distinct, sh.repeat)
		require.NoError(t, c.Root().Call(ctx, "Many", nil, 0, sh.distinct, sh.repeat, true), name)
		testkit.Eventually(t, name+": no reply, every object dropped", func() bool { return sc.Stats().Exports == 1 })

		_, err := Call[[]*Ref](ctx, c.Root(), "ManyThenBad", 0, sh.distinct, sh.repeat)
		require.ErrorIs(t, err, ErrBadReply, name)
		testkit.Eventually(t, name+": bad reply, every object dropped", func() bool { return sc.Stats().Exports == 1 })
		assert.Equal(t, 0, c.Stats().Imports, name)

		// The same result into any: every handle made, all released.
		v, err := Call[any](ctx, c.Root(), "ManyThenBad", 0, sh.distinct, sh.repeat)
		require.NoError(t, err, name)
		for _, x := range v.([]any) {
			if r, ok := x.(*Ref); ok {
				r.Release()
			}
		}
		testkit.Eventually(t, name+": into any, every object dropped", func() bool { return sc.Stats().Exports == 1 })
	}
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}

// TestArgumentReferencesComeBackExactlyOnce sends the caller's objects as
// arguments, many times each and with roots, to a handler that calls each
// one back and releases it, and arguments that fail to decode halfway:
// the caller's exports must all be dropped, and no release be too many.
func TestArgumentReferencesComeBackExactlyOnce(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	croot := &refBox{}
	c := dial(t, addr, WithRoot(croot))
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	for _, sh := range refShapes {
		name := fmt.Sprintf("%d ids x %d", sh.distinct, sh.repeat)
		args := refList(croot, 500, sh.distinct, sh.repeat, true)
		ids, err := Call[[]int](ctx, c.Root(), "IDs", args)
		require.NoError(t, err, name)
		assert.Equal(t, wantIDs(500, sh.distinct, sh.repeat, true), ids, name)
		testkit.Eventually(t, name+": every argument released", func() bool { return c.Stats().Exports == 1 })

		bad := append(args[:len(args)/2:len(args)/2], "not a reference")
		bad = append(bad, args[len(args)/2:]...)
		_, err = Call[[]int](ctx, c.Root(), "IDs", bad)
		require.ErrorIs(t, err, ErrBadArguments, name)
		testkit.Eventually(t, name+": arguments of a refused call released", func() bool { return c.Stats().Exports == 1 })
		assert.Equal(t, 0, sc.Stats().Imports, name)
	}
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}

// TestReferencesUnderConcurrentMessages has many goroutines, both ways at
// once, receive results and send arguments with one id or many (pooled
// accounts of both sizes reused across messages on the reader), check
// every handle is the object it was made for, and release them, some
// explicitly and some to the collector.
func TestReferencesUnderConcurrentMessages(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	croot := &refBox{}
	c := dial(t, addr, WithRoot(croot))
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 60*time.Second)
	const goroutines, rounds = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				for i := range rounds {
					base := g*100000 + i*100
					distinct, repeat, roots := 1+(g+i)%(2*refAccountScan), 1+i%3, i%2 == 0
					refs, err := Call[[]*Ref](ctx, c.Root(), "Many", base, distinct, repeat, roots)
					if err != nil {
						return err
					}
					want := wantIDs(base, distinct, repeat, roots)
					for j, r := range refs {
						if want[j] < 0 {
							continue
						}
						id, err := Call[int](ctx, r, "ID")
						if err != nil {
							return fmt.Errorf("handle %d of %v: %w", j, want, err)
						}
						if id != want[j] {
							return fmt.Errorf("handle %d is object %d, want %d", j, id, want[j])
						}
						if (g+j)%2 == 0 {
							r.Release() // the others go to the collector
						}
					}
					args := refList(croot, base, distinct, repeat, roots)
					ids, err := Call[[]int](ctx, c.Root(), "IDs", args)
					if err != nil {
						return err
					}
					if fmt.Sprint(ids) != fmt.Sprint(want) {
						return fmt.Errorf("arguments answered %v, want %v", ids, want)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	testkit.Eventually(t, "every object dropped on both sides", func() bool {
		runtime.GC()
		return sc.Stats().Exports == 1 && c.Stats().Exports == 1 && c.Stats().Imports == 0 && sc.Stats().Imports == 0
	})
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}

// TestCollectedHandlesOfOneMessage lets the collector take handles that
// came in one message, many to each object, while one handle to one object
// stays: that object must stay usable, the others be dropped, and that
// one be dropped once its last handle is collected too.
func TestCollectedHandlesOfOneMessage(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	c := dial(t, addr)
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 30*time.Second)
	kept := func() *Ref {
		refs, err := Call[[]*Ref](ctx, c.Root(), "Many", 7, 2*refAccountScan, 3, true)
		require.NoError(t, err)
		return refs[len(refs)-2] // object 7+2*refAccountScan-1, its last handle
	}()
	testkit.Eventually(t, "the other objects dropped", func() bool {
		runtime.GC()
		return sc.Stats().Exports == 2
	})
	id, err := Call[int](ctx, kept, "ID")
	require.NoError(t, err)
	assert.Equal(t, 7+2*refAccountScan-1, id)
	assert.Equal(t, 1, c.Stats().Imports)
	runtime.KeepAlive(kept)
	kept = nil
	testkit.Eventually(t, "the last object dropped", func() bool {
		runtime.GC()
		return sc.Stats().Exports == 1
	})
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}

// TestHandlesOutliveTheirConnection closes a connection while it holds
// many handles, then releases some and lets the collector take the rest:
// nothing is sent, nothing panics, and a second connection's handles to
// objects with the same ids are unaffected.
func TestHandlesOutliveTheirConnection(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	ctx := testkit.Ctx(t, 30*time.Second)
	c1, c2 := dial(t, addr), dial(t, addr)
	refs1, err := Call[[]*Ref](ctx, c1.Root(), "Many", 0, refAccountScan+3, 2, true)
	require.NoError(t, err)
	refs2, err := Call[[]*Ref](ctx, c2.Root(), "Many", 100, refAccountScan+3, 2, true)
	require.NoError(t, err)
	require.Equal(t, refs1[0].id, refs2[0].id, "each connection numbers its exports alike")
	require.NoError(t, c1.Close())
	<-c1.Done()
	for _, r := range refs1[:len(refs1)/2] {
		r.Release()
	}
	refs1 = nil
	runtime.GC()
	runtime.GC()
	assert.Equal(t, 0, c1.Stats().Imports)
	assert.Equal(t, refAccountScan+3, c2.Stats().Imports)
	for i, r := range refs2 {
		if r.id == 0 {
			continue
		}
		id, err := Call[int](ctx, r, "ID")
		require.NoError(t, err)
		assert.Equal(t, 100+(i/2)%(refAccountScan+3), id)
		r.Release()
	}
	testkit.Eventually(t, "the second connection's objects dropped", func() bool {
		for _, sc := range srv.Conns() {
			if sc.Stats().Exports != 1 {
				return false
			}
		}
		return true
	})
	require.NoError(t, c2.Err())
}

// refHub passes on the objects of the peer named "b".
type refHub struct {
	remoteable.Referenceable
	srv *Server
}

func (h *refHub) peerB() (*Conn, error) {
	for _, c := range h.srv.Conns() {
		if c.Peer().Name == "b" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("no peer b")
}

// FromB fetches b's objects and hands them on: the caller gets proxies,
// one export per object of b however many handles to it came.
func (h *refHub) FromB(ctx context.Context, base, distinct, repeat int) ([]*Ref, error) {
	b, err := h.peerB()
	if err != nil {
		return nil, err
	}
	return Call[[]*Ref](ctx, b.Root(), "Many", base, distinct, repeat, false)
}

// IDs asks each of refs, which came home as handles of the proxies, which
// object of b it is, and releases them.
func (h *refHub) IDs(ctx context.Context, refs []*Ref) ([]int, error) {
	return (&refBox{}).IDs(ctx, refs)
}

// TestRelayedReferencesComeBack hands one peer's objects to another through
// a relay, many handles to each object in one message, sends them home to
// the relay and releases them: the relay's proxies (duplicated handles in
// its import table) must all go, and with them every object of the peer
// that exported them.
func TestRelayedReferencesComeBack(t *testing.T) {
	leakcheck.Check(t)
	h := &refHub{}
	srv, addr := startServer(t, h)
	h.srv = srv
	ctx := testkit.Ctx(t, 30*time.Second)
	b := dial(t, addr, WithName("b"), WithRoot(&refBox{}))
	a := dial(t, addr, WithName("a"))
	testkit.Eventually(t, "both peers served", func() bool { return len(srv.Conns()) == 2 })
	for _, sh := range refShapes {
		name := fmt.Sprintf("%d ids x %d", sh.distinct, sh.repeat)
		refs, err := Call[[]*Ref](ctx, a.Root(), "FromB", 10, sh.distinct, sh.repeat)
		require.NoError(t, err, name)
		require.Len(t, refs, sh.distinct*sh.repeat, name)
		// The relay's own handles, those FromB received, are collected:
		// its proxies' handles must keep b's objects.
		for range 3 {
			runtime.GC()
		}
		for i, r := range refs {
			id, err := Call[int](ctx, r, "ID")
			require.NoError(t, err, "%s: handle %d", name, i)
			assert.Equal(t, 10+i%sh.distinct, id, name)
		}
		ids, err := Call[[]int](ctx, a.Root(), "IDs", refs)
		require.NoError(t, err, name)
		assert.Equal(t, wantIDs(10, sh.distinct, sh.repeat, false), ids, name)
		for _, r := range refs {
			r.Release()
		}
		testkit.Eventually(t, name+": b's objects dropped", func() bool {
			runtime.GC()
			return b.Stats().Exports == 1 && a.Stats().Imports == 0
		})
	}
	require.NoError(t, a.Err())
	require.NoError(t, b.Err())
}

// TestReferenceAccountsAcrossConnections has several connections' readers
// account for large messages at once, while other goroutines release
// handles on the same connections (so that a reader waits on the import
// table's lock mid-message and another runs): an account taken from the
// pool must never be shared by two messages, or counts would mix and
// objects be dropped early or never.
func TestReferenceAccountsAcrossConnections(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	ctx := testkit.Ctx(t, 60*time.Second)
	const conns, perConn, rounds = 4, 3, 6
	cs := make([]*Conn, conns)
	for i := range cs {
		cs[i] = dial(t, addr)
	}
	var wg sync.WaitGroup
	errs := make(chan error, conns*perConn)
	for ci, c := range cs {
		for g := range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- func() error {
					for i := range rounds {
						base := (ci*perConn+g)*10000 + i*100
						distinct := 3*refAccountScan + i
						refs, err := Call[[]*Ref](ctx, c.Root(), "Many", base, distinct, 2, true)
						if err != nil {
							return err
						}
						want := wantIDs(base, distinct, 2, true)
						// The first half of the handles go at once; the
						// second half must still reach their objects.
						for _, r := range refs[:len(refs)/2] {
							r.Release()
						}
						for j := len(refs) / 2; j < len(refs); j++ {
							if want[j] < 0 {
								continue
							}
							id, err := Call[int](ctx, refs[j], "ID")
							if err != nil {
								return fmt.Errorf("handle %d: %w", j, err)
							}
							if id != want[j] {
								return fmt.Errorf("handle %d is object %d, want %d", j, id, want[j])
							}
							refs[j].Release()
						}
					}
					return nil
				}()
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	testkit.Eventually(t, "every object dropped", func() bool {
		for _, sc := range srv.Conns() {
			if sc.Stats().Exports != 1 {
				return false
			}
		}
		return true
	})
	for _, c := range cs {
		require.NoError(t, c.Err())
		assert.Equal(t, 0, c.Stats().Imports)
	}
}

// TestReferencesInResultsGivenUpOn makes calls whose callers give up about
// when their results, many references each, arrive: a result nobody waits
// for any more is accounted for whole and given back, and one that
// arrived as its caller gave up is delivered, so that every object is
// dropped in the end either way.
func TestReferencesInResultsGivenUpOn(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &refBox{})
	c := dial(t, addr)
	sc := serverConn(t, srv)
	ctx := testkit.Ctx(t, 60*time.Second)
	const goroutines, calls = 4, 40
	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				cctx, cancel := context.WithTimeout(ctx, time.Duration((g*calls+i)%40)*100*time.Microsecond)
				refs, err := Call[[]*Ref](cctx, c.Root(), "Many", 0, 1+i%(2*refAccountScan), 2, true)
				cancel()
				for _, r := range refs {
					r.Release()
				}
				if err != nil && ctx.Err() == nil {
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					gaveUp.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d of %d calls given up on", gaveUp.Load(), goroutines*calls)
	testkit.Eventually(t, "every object dropped", func() bool { return sc.Stats().Exports == 1 })
	assert.Equal(t, 0, c.Stats().Imports)
	require.NoError(t, c.Err())
	require.NoError(t, sc.Err())
}
