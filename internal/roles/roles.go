// Package roles names the parts objects play that the broker counts but
// does not implement: the cache engine's subscriptions and mirror
// observers. It breaks the import cycle between broker (which counts) and
// internal/feed (which implements).
package roles

// Subscription is implemented by the object a model's owner exports for
// each mirror it feeds.
type Subscription interface{ CacheSubscription() }

// Observer is implemented by the object a mirror exports to the model it
// follows.
type Observer interface{ CacheObserver() }
