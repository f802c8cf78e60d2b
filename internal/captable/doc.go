// Package captable is the process's table of feed capabilities: the
// unguessable tokens a model's owner issues to each subscriber of one of its
// feeds, so that a mirror can find the same feed again on a new connection
// (docs/protocol.md, "Resuming a feed by its token") without replaying the
// call that returned the model.
//
// The table holds each feed weakly: a model nobody holds is collected, and
// its entry goes with it. A token is valid only for the issuers that gave
// it to a subscriber (Issue): as the broker names them (IssuerOf), a
// server or a dialled connection, with the peer's identity when the
// server verified it. The broker answers the built-in call that presents
// a token (Method, "tether.feed") from this table; internal/feed
// registers every feed it makes; the remote package learns, through
// SetSourceHook, the token of the feed each of its mirrors follows.
//
// It sits below the broker and imports nothing of Tether's.
package captable
