package broker

import (
	"context"
	"fmt"
	"slices"

	"github.com/tether-go/tether/remoteable"
)

// callExt is what a call's extension map says.
type callExt struct {
	acting   actingFor
	waitLink bool
	md       Metadata
	nestedIn uint64 // the receiver's call this one is nested in, or 0
}

// empty reports whether the extension map would have no entry.
func (x callExt) empty() bool {
	return len(x.acting.ids) == 0 && !x.waitLink && len(x.md) == 0 && x.nestedIn == 0
}

// Bounds of an identity as it travels in a call. Names are checked at
// the handshake, so every identity a process verified fits.
const (
	maxIdentityName  = 256
	maxIdentityLabel = 64
)

// checkIdentity refuses an identity too long to travel in a call's
// ForwardedFor.
func checkIdentity(id remoteable.Identity) error {
	if len(id.Name) > maxIdentityName {
		return fmt.Errorf("the name is %d bytes, more than the %d a name may have", len(id.Name), maxIdentityName)
	}
	if len(id.VerifiedBy) > maxIdentityLabel {
		return fmt.Errorf("the verification label is %d bytes, more than the %d it may have", len(id.VerifiedBy), maxIdentityLabel)
	}
	return nil
}

// actingFor is whom a call acts for: the identities, and for each the
// token of the connection on which the hop that added it verified it (""
// when not known), so that a call that comes back to that party through
// the same hop can leave it out, verified or not. A token is the hop's
// own (Conn.hopID): random, made by that process and never taken from a
// peer, so no peer can make a hop mistake one connection for another; a
// peer can only make it drop entries that peer itself claimed.
type actingFor struct {
	ids  []remoteable.Identity
	hops []string
}

// forwardedFor returns whom a call made with ctx on c acts for: nothing for
// a call not made from a handler (or made AsSelf); else the handler's
// caller after whoever that caller acted for. The caller is left out when
// the call goes back on the connection it came from (the callee is that
// caller), and so is every entry that is the callee itself: one this
// process added for the connection the call goes on (its hop token is
// c.hopID), or equal to the callee's identity as this side verified it. A
// party acting for itself needs nobody's permission. An entry a peer sent
// with a forged token can be dropped too, but it was that peer's own
// claim, which only ever made the check stricter.
func (c *Conn) forwardedFor(ctx context.Context, method string) (actingFor, error) {
	x, ok := ctx.Value(callKey{}).(*callCtx)
	if !ok || ctx.Value(selfKey{}) != nil {
		return actingFor{}, nil
	}
	p, _ := remoteable.PeerFrom(ctx)
	a := actingFor{ids: p.ForwardedFor, hops: x.hops}
	if x.c != c {
		if err := checkIdentity(p.Identity()); err != nil {
			return actingFor{}, fmt.Errorf("%w: %s cannot say whom it acts for: %w", ErrTooManyHops, method, err)
		}
		a.ids = append(slices.Clip(a.ids), p.Identity())
		a.hops = append(slices.Clip(a.hops), x.c.hopID)
	}
	callee := c.peer
	for i := 0; i < len(a.ids); i++ {
		mine := i < len(a.hops) && a.hops[i] == c.hopID
		if mine || (callee.VerifiedBy != "" && a.ids[i] == callee.Identity()) {
			a = a.without(i)
			i--
		}
	}
	if len(a.ids) > remoteable.MaxForwardedFor {
		return actingFor{}, fmt.Errorf("%w: %s would act for %d parties, more than %d: make it with broker.AsSelf(ctx) "+
			"if this process acts on its own authority", ErrTooManyHops, method, len(a.ids), remoteable.MaxForwardedFor)
	}
	return a, nil
}

// without returns a without entry i, leaving a's slices as they were.
func (a actingFor) without(i int) actingFor {
	out := actingFor{ids: slices.Delete(slices.Clone(a.ids), i, i+1)}
	if i < len(a.hops) {
		out.hops = slices.Delete(slices.Clone(a.hops), i, i+1)
	} else {
		out.hops = slices.Clone(a.hops)
	}
	return out
}

// hop returns the hop token recorded for entry i (Conn.hopID of the
// connection on which the entry's party was verified, never the connection
// ID), or "".
func (a actingFor) hop(i int) string {
	if i < len(a.hops) {
		return a.hops[i]
	}
	return ""
}
