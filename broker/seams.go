package broker

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/tether-go/tether/internal/cborx"
)

// The seams between the broker and the cache engine above it
// (internal/feed, which imports the broker). The broker cannot name the
// engine's types, so it asks the objects it exports whether they implement
// one of these interfaces, on the connection that holds them: nothing is
// installed process-wide, and the order in which packages initialise does
// not matter. The interfaces are unexported; the engine implements their
// methods by name (as it does cacheHome's and CacheModel).

// cacheSubscription is implemented by the object a model's owner exports
// for each mirror it feeds: the broker counts them for the subscription
// quota (WithMaxSubscriptions) and ConnStats.Observers.
type cacheSubscription interface{ CacheSubscription() }

// cacheObserver is implemented by the object a mirror exports to the model
// it follows: the broker counts them for ConnStats.Mirrors.
type cacheObserver interface{ CacheObserver() }

// snapshotStart is implemented (on its pointer) by the batch a mirror's
// observer's Apply receives: true for a snapshot's first batch, which the
// mirror's server interceptors see as CallSnapshot.
type snapshotStart interface{ SnapshotStart() bool }

// encodedCBOR is implemented by a call's argument (a value encoded whole,
// not one inside another) that the cache engine encoded itself: a batch of a model's steps, built from keys and values
// checked when they were set or received (their nesting against the
// batch's place in a call, their text as UTF-8). The encoder writes its
// bytes into the frame as they are, with one copy, rather than run them
// through fxamacker's marshal and the sender's checks again for every
// subscription the batch goes to. The receiver validates the message as
// any other. The method's cborx.Trusted parameter keeps users' types out.
type encodedCBOR interface{ EncodedCBOR(cborx.Trusted) []byte }

// validatedDecoder is implemented (on its pointer) by a value the cache
// engine decodes itself, strictly and without reflection: a mirror's
// batch. The decoder hands it the message's bytes from the item on (data),
// which it validated with the whole message (well-formed, nesting, UTF-8),
// rather than run them through fxamacker's Unmarshal, which would check
// them once more before calling the same decoding. The value decodes the
// item at data's start and returns its length: the decoder does not walk
// the item first to find where it ends, which, for a batch pushed to many
// mirrors, cost each of them as much as decoding it. (A type whose maps
// the decoder must fit first, ti.fit, gets exactly its item.) Its errors
// are the value's own (a batch's match feed.ErrBadBatch). cborx.Trusted
// keeps users' types out, as for encodedCBOR.
type validatedDecoder interface {
	DecodeValidated(seal cborx.Trusted, data []byte) (n int, err error)
}

// linkLoss is implemented by exported objects that tell a release from a
// lost connection: when the connection that held the object failed (reset,
// timed out; not closed by either side), the broker calls ExportLost
// instead of remoteable.ExportObserver's Unexported. A relay keeps a mirror
// whose last holder went that way for a while, so that the holder can come
// back and resume it. who is the peer's identity (Conn.peerKey).
type linkLoss interface{ ExportLost(who string) }

// feedResumer is implemented by a feed that wants to know when a holder
// came back with its token (the built-in call captable.Method found it):
// with linkLoss, it tells whether a holder is still away. who is the
// presenting peer's identity, as for linkLoss.
type feedResumer interface{ FeedResumed(who string) }

// replyGate is implemented by an exported object that holds back the
// replies on the connection that holds it until the peer caught up with
// what a handler changed: a model's subscription, whose observer must hold
// a change before the call that made it answers (read-your-writes: a call
// that changed a model answers only after the caller's mirrors on the same
// connection hold the change).
type replyGate interface {
	// ReplyMark is called before a handler on the connection runs, with
	// the object the call is addressed to. What it returns goes to
	// ReplyWait; nil means the reply need not wait for this gate. It must
	// be cheap.
	ReplyMark(target any) any
	// ReplyWait is called after the handler returned and before its reply
	// is sent. It returns when the reply may go, or when ctx ends.
	ReplyWait(ctx context.Context, mark any)
}

// replyGates are the exports of one connection that are reply gates,
// keyed by export id. The count lets a connection without any (every
// connection that feeds no mirror) skip the lock on every call.
type replyGates struct {
	n  atomic.Int32
	mu sync.Mutex
	m  map[uint64]replyGate
}

// add records the export id as a gate when obj is one.
func (g *replyGates) add(id uint64, obj any) {
	gate, ok := obj.(replyGate)
	if !ok {
		return
	}
	g.mu.Lock()
	if g.m == nil {
		g.m = map[uint64]replyGate{}
	}
	g.m[id] = gate
	g.n.Store(int32(len(g.m)))
	g.mu.Unlock()
}

// remove forgets the export id, when it was a gate.
func (g *replyGates) remove(id uint64) {
	if g.n.Load() == 0 {
		return
	}
	g.mu.Lock()
	delete(g.m, id)
	g.n.Store(int32(len(g.m)))
	g.mu.Unlock()
}

// clear forgets every gate, when the connection ended: a dead connection
// may stay reachable (from a Ref) and must not keep its gates alive.
func (g *replyGates) clear() {
	g.mu.Lock()
	g.m = nil
	g.n.Store(0)
	g.mu.Unlock()
}

// gateMark is one gate's mark, taken before a handler ran.
type gateMark struct {
	gate replyGate
	mark any
}

// mark asks every gate for its mark before a handler addressed to target
// runs; nil when there is nothing to wait for.
func (g *replyGates) mark(target any) []gateMark {
	if g.n.Load() == 0 {
		return nil
	}
	g.mu.Lock()
	gates := make([]replyGate, 0, len(g.m))
	for _, gate := range g.m {
		gates = append(gates, gate)
	}
	g.mu.Unlock()
	var marks []gateMark
	for _, gate := range gates {
		if m := gate.ReplyMark(target); m != nil {
			marks = append(marks, gateMark{gate, m})
		}
	}
	return marks
}

// wait returns once every gate marked lets the reply go, or ctx ended.
func (g *replyGates) wait(ctx context.Context, marks []gateMark) {
	for _, m := range marks {
		m.gate.ReplyWait(ctx, m.mark)
	}
}
