// Package linkwait marks a context whose calls wait for a link that is
// down, instead of failing at once. remote.WaitForLink sets the mark; the
// broker sends it with every call made under it (the call extension
// "wait for links", docs/protocol.md) and puts it on the handler's
// context on the far side, so that a relay forwarding the call waits for
// its own upstream link too, bounded by the call's deadline.
package linkwait
