package cache

import "github.com/tether-go/tether/internal/feed"

// ErrSourceLost reports a mirror that can no longer follow its model, so
// that it will never change again: the model's owner restarted (or dropped
// the model) and the method that returned it is not declared Idempotent,
// or the mirror was received through a bare *broker.Ref whose connection
// ended. A mirror that lost its source says so once and for all: Err
// returns an error that matches ErrSourceLost (and
// broker.ErrDeadReference), Stale stays true, the Lost signal fires, and
// a warning is logged. Call the method again for a new mirror.
//
// A mirror obtained through a *remote.Ref resumes after an outage of any
// link on its way (relays included) without declarations: the owner gives
// it a capability for the model's feed with its subscription. Only when
// the owner itself no longer has the feed does it replay the method, and
// then only one declared Idempotent.
var ErrSourceLost = feed.ErrSourceLost
