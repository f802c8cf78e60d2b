// Package callhook lets a package above the broker hold back the reply to a
// call until something it started during the call is done. The cache
// package uses it for read-your-writes: a call that changed a model answers
// only after the caller's mirrors on the same connection hold the change.
//
// The broker calls Begin before a handler runs and End after it returns,
// before the reply is sent. A hook must make both cheap for connections it
// has nothing to do with.
package callhook
