// Package cache provides Tether's Cacheables: observable models whose
// mirrors, in other processes and however many hops away, hold the same
// state and fire the same local signals, through outages.
//
// A model (Map, Value) is an ordinary local object with a Changed signal.
// Returned from a remote method, or passed as an argument, it is sent as a
// Cacheable: the receiver gets a Mirror (ValueMirror) that holds the
// model's state when the call returns and then applies every change in
// order. Code that watches a model does not change when the model is
// remote: both implement View and fire Changed with the same Change
// values.
//
// Guarantees:
//
//  1. Every model has an epoch (a UUID made with it) and a version that
//     rises by one per change. A mirror applies changes in version order,
//     never one twice, never skipping one, never going back within an
//     epoch; Version tells how far it is.
//  2. After an outage a mirror resumes from its (epoch, version): the
//     model replays what it missed from a bounded log (WithLogSize), or
//     sends a snapshot when the log no longer reaches back or the epoch
//     changed (the server restarted). After a snapshot the mirror fires
//     the differences from its previous state as ordinary changes.
//  3. Stale reports, and StaleChanged signals, when a mirror may be
//     behind: its link or a link further upstream is down.
//  4. A slow observer costs the others nothing: each mirror's subscription
//     is a cursor into the model's log, pushed one batch at a time; one that
//     falls behind the log is sent a snapshot, itself read from the model a
//     batch at a time rather than copied, so a mirror that stops reading
//     costs the model's owner the same whatever the model's size. Watchers of Changed run on
//     the model's (or mirror's) own goroutine with a queue bounded per
//     step (WithQueueSize): watchers that keep up see every change, even
//     of a batch larger than the queue; watchers that fell behind get the
//     differences instead, marked Change.Merged and counted by
//     MergedChanges. A mirror made by NewMirror takes the options a model
//     takes.
//  5. Read-your-writes: when a call that changed a model returns, the
//     caller's mirrors of that model on the same connection (and, through a
//     relay, downstream of it) already hold the change. Their Changed
//     events may still be on their way.
//  6. A mirror is Cacheable itself: a relay that passes a model on keeps
//     one subscription upstream for any number of mirrors downstream, and
//     those resume against the relay.
//
// Keys and values are encoded with Tether's codec: plain data and
// Copyables, not references. A mirror obtained through a *remote.Ref
// resumes by itself after outages, through relays too; only when the
// model's owner restarted does it need the method that returned the model
// declared Idempotent (remoteable.MethodOptions), and without that it
// reports ErrSourceLost. Close mirrors when done; one nobody references is
// closed by the garbage collector, taking the functions connected to its
// signals with it, and one passed back to the process that owns its model
// arrives there as the model itself (see Mirror).
// docs/protocol.md describes the wire and docs/guide.md walks through an
// example.
package cache
