package roles

// Subscription is implemented by the object a model's owner exports for
// each mirror it feeds.
type Subscription interface{ CacheSubscription() }

// Observer is implemented by the object a mirror exports to the model it
// follows.
type Observer interface{ CacheObserver() }

// LinkLoss is implemented by exported objects that want to tell a release
// from a lost connection: when the connection that held the object failed
// (reset, timed out; not closed by either side), the broker calls
// ExportLost instead of remoteable.ExportObserver's Unexported. A relay keeps a mirror whose last holder went that way for a
// while, so that the holder can come back and resume it.
// who is the peer's identity (its verified name and how it was verified,
// or its announced name).
type LinkLoss interface{ ExportLost(who string) }

// Resumable is implemented by a feed that wants to know when a holder came
// back with its token (the built-in call captable.Method found it): with
// LinkLoss, it tells whether a holder is still away.
// who is the presenting peer's identity, as for LinkLoss.
type Resumable interface{ FeedResumed(who string) }
