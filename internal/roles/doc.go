// Package roles names the parts objects play that the broker counts but
// does not implement: the cache engine's subscriptions and mirror
// observers. It breaks the import cycle between broker (which counts) and
// internal/feed (which implements).
package roles
