// Package feed is the engine behind Tether's Cacheables, without Go types:
// a model's state as raw CBOR entries, its epoch and version, the bounded
// log of recent changes, the subscriptions that push changes to mirrors,
// and (follow.go) the mirror side that subscribes, applies and resumes.
//
// The cache package puts typed models on top of it; the remote package uses
// it untyped for the mirrors a relay keeps, so that a relay holds one
// upstream subscription per model whatever the number of downstream
// mirrors. docs/protocol.md describes the wire form.
//
// The owner's side:
//
//  1. New makes the feed of one model. Set and Delete change it, each as a
//     new version, and return the Event the model reports to its local
//     watchers.
//  2. Publisher is the object the owner sends by reference as the model's
//     feed: a peer calls Subscribe on it and receives a snapshot, then the
//     changes that follow.
//
// The mirror's side:
//
//  1. NewFollower takes the peer's reference to a Publisher and a Sink that
//     decodes each change and commits the batches applied.
//  2. Attach subscribes and returns once the first batch is applied; from
//     then on the Follower resubscribes by itself after outages, and its
//     own Feed serves the mirrors further downstream.
//  3. Close stops it; Err says why it last failed to resubscribe.
//
// Ownership: a Feed starts one pusher goroutine per subscription, which
// stops when the subscriber lets the subscription go (or its connection
// ends) or a push fails. A Follower owns one goroutine that resubscribes
// after outages; Close stops it. The writer (Set, Delete, a mirror's
// Apply) starts nothing and waits for no pusher.
//
// What is lock-free: the feed publishes its tail (its epoch, version,
// staleness and a window of its log of immutable steps) through an atomic
// pointer, and rings a bell that wakes only the pushers actually waiting
// (a channel closed and replaced, counted with an atomic). A change
// publishes the tail at once only when some pusher waits; otherwise it
// marks it pending, and a pusher that comes back for more, a
// read-your-writes gate or a shared snapshot publishes it (Feed.current).
// A pusher never waits for the lock to do so: it tries, and with work in
// hand uses the last tail meanwhile; one about to wait leaves the tail to
// whoever holds the lock, who publishes it as they unlock (Feed.unlock).
// A pusher whose cursor the tail's log covers builds its batch
// from the tail without the feed's lock, from each step's CBOR, encoded
// once; the subscriptions at the same version send the same batch, built
// once (Feed.shared). A subscription that needs a snapshot takes the
// feed's shared snapshot (snapshare.go): the whole state read at one
// version under the lock once, encoded once, sent to every subscription
// that needs one while the log still reaches back to it, and followed by
// the steps made since. f.mu guards the entries, the log's trimming and
// the rare paths: a subscription's first batch, its own snapshot when its
// batch size was shrunk, the report of a brief outage.
//
// Costs: a Set costs the writer the same whatever the number of
// subscriptions (one step, taken from a slab; a tail and one channel
// closed only when some pusher waits). A
// subscription keeps a version, or a place in a snapshot, and at most
// one batch in flight; it never holds a step of the log or a shared
// snapshot between batches, so one whose subscriber stops acknowledging
// costs the same whatever the model's size. The feed itself holds its
// entries, its log, which keeps more steps while snapshots, shared or
// of the subscriptions' own, are under way (appendLog), the steps dropped from
// the log's front until the log's backing array is reallocated (at most
// about the log's size), the last shared batch of steps, and the shared
// snapshot while some subscription is part way through it. A mirror
// decodes batches with Batch.UnmarshalCBOR, without reflection, one
// allocation per change for its key and value; the mirrors of one model in
// a process share the decoding of a batch they all receive (the package
// keeps the last four batches decoded, with a copy of their bytes). A
// leaf mirror's feed whose Sink is a
// StateSource keeps no entries of its own (Feed.lazy) until it is
// exported, subscribed to or read: then it takes them from the Sink
// (Feed.keepState); a resync builds them for its difference and drops
// them again. A
// mirror applies a batch in one pass under its feed's lock (applySteps):
// once its feed was sent to a peer (before that nobody can follow it, and
// it logs nothing: Feed.unlogged), its steps go into its log as entries
// made once for all the mirrors in the process that apply the same
// decoded batch (recentBatches.logged; a log keeps that array while any
// of them is in it: at most one batch more than the log's bound), one
// tail is published, and the batch's events,
// built in a pooled array (takeEvents), go to the Sink in one Commit. A
// pusher hands its batch to the broker as encodedBatch, written into the
// call's frame as it is, and the broker decodes a received batch with
// Batch.DecodeValidated (the broker's seams, broker/seams.go). The broker bounds the
// subscriptions one peer may hold (broker.WithMaxSubscriptions).
//
// Layering: the package sits between the broker and the packages that hold
// models (broker → feed → remote, cache, gateway). The broker cannot name
// its types; it reaches them through its seams (broker/seams.go): a
// Subscription is counted and holds back the replies on its connection
// until its observer applied what a call changed (ReplyMark, ReplyWait:
// read-your-writes); an observer is counted; a Publisher hears of holders
// whose link failed (ExportLost) or that came back (FeedResumed).
package feed
