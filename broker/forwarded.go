package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// A call may carry a seventh element after its arguments: a map of
// extensions keyed by small integers. A peer that does not know a key
// skips it; one that knows none ignores the element (protocol version 1
// read only six). docs/protocol.md §6 (Call) describes it.
const (
	// extForwardedFor is the key of the identities a call acts for:
	// [[name, verifiedBy, hop?], ...], the original caller first; hop is
	// the ID of the connection on which that party was verified.
	extForwardedFor = 1
	// extWaitLink is the key of a boolean: true says that the caller waits
	// for links that are down (remote.WaitForLink), so that a relay
	// forwarding the call waits for its upstream link, within the call's
	// deadline, instead of failing it at once.
	extWaitLink = 2
)

// callExt is what a call's extension map says.
type callExt struct {
	acting   actingFor
	waitLink bool
}

// empty reports whether the extension map would have no entry.
func (x callExt) empty() bool { return len(x.acting.ids) == 0 && !x.waitLink }

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

// hop returns the connection ID recorded for entry i, or "".
func (a actingFor) hop(i int) string {
	if i < len(a.hops) {
		return a.hops[i]
	}
	return ""
}

// appendCallExt appends a call's extension map: whom it acts for, if
// anyone, and whether the caller waits for links, if it does.
func appendCallExt(b []byte, x callExt) []byte {
	n := 0
	if len(x.acting.ids) > 0 {
		n++
	}
	if x.waitLink {
		n++
	}
	b = cborx.AppendMap(b, n)
	if a := x.acting; len(a.ids) > 0 {
		b = cborx.AppendUint(b, extForwardedFor)
		b = cborx.AppendArray(b, len(a.ids))
		for i, id := range a.ids {
			if h := a.hop(i); h != "" {
				b = cborx.AppendArray(b, 3)
				b = cborx.AppendText(b, id.Name)
				b = cborx.AppendText(b, id.VerifiedBy)
				b = cborx.AppendText(b, h)
				continue
			}
			b = cborx.AppendArray(b, 2)
			b = cborx.AppendText(b, id.Name)
			b = cborx.AppendText(b, id.VerifiedBy)
		}
	}
	if x.waitLink {
		b = cborx.AppendUint(b, extWaitLink)
		b = cborx.AppendBool(b, true)
	}
	return b
}

// errMalformedExt is the protocol violation of a call extension that is not
// what appendCallExt writes.
var errMalformedExt = errors.New("malformed call extension: want a map of small integer keys; " +
	"key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean")

// readCallExt reads the extension of a call of n elements, if it has one,
// from r positioned on its argc arguments, which it skips: the policy
// needs whom the call acts for before the arguments are decoded.
func readCallExt(r *cborx.Reader, n, argc int) (callExt, error) {
	if n < 7 {
		return callExt{}, nil
	}
	for i := 0; i < argc; i++ {
		if err := r.Skip(); err != nil {
			return callExt{}, errors.New("malformed call arguments")
		}
	}
	return parseCallExt(r)
}

// parseCallExt reads a call's extension map. Keys it does not know are
// skipped (the frame was validated against the decoding limits, so that
// costs no more than the frame's size). It returns ErrTooManyHops (for
// the caller) when the call acts for too many parties, and another error
// for a malformed map (a protocol violation).
func parseCallExt(r *cborx.Reader) (callExt, error) {
	h, err := r.ReadHead()
	if err != nil || h.Major != cborx.MajorMap {
		return callExt{}, errMalformedExt
	}
	var x callExt
	for i := uint64(0); i < h.Arg; i++ {
		key, err := r.ReadUint()
		if err != nil {
			return callExt{}, errMalformedExt
		}
		switch key {
		case extForwardedFor:
			if x.acting, err = parseForwardedFor(r); err != nil {
				return callExt{}, err
			}
		case extWaitLink:
			v, err := r.ReadHead()
			if err != nil || v.Major != cborx.MajorSimple || (v.AI != cborx.SimpleTrue && v.AI != cborx.SimpleFalse) {
				return callExt{}, errMalformedExt
			}
			x.waitLink = v.AI == cborx.SimpleTrue
		default:
			if r.Skip() != nil {
				return callExt{}, errMalformedExt
			}
		}
	}
	return x, nil
}

// parseForwardedFor reads the value of key 1: whom the call acts for.
func parseForwardedFor(r *cborx.Reader) (actingFor, error) {
	n, err := r.ReadArray()
	if err != nil {
		return actingFor{}, errMalformedExt
	}
	if n > remoteable.MaxForwardedFor {
		return actingFor{}, fmt.Errorf("%w: the call acts for %d parties, more than %d", ErrTooManyHops, n, remoteable.MaxForwardedFor)
	}
	a := actingFor{ids: make([]remoteable.Identity, n), hops: make([]string, n)}
	for j := range a.ids {
		m, err1 := r.ReadArray()
		name, err2 := r.ReadText()
		by, err3 := r.ReadText()
		if (m != 2 && m != 3) || errors.Join(err1, err2, err3) != nil {
			return actingFor{}, errMalformedExt
		}
		if m == 3 {
			hop, err := r.ReadText()
			if err != nil || len(hop) > maxIdentityLabel {
				return actingFor{}, errMalformedExt
			}
			a.hops[j] = string(hop)
		}
		a.ids[j] = remoteable.Identity{Name: string(name), VerifiedBy: string(by)}
		if err := checkIdentity(a.ids[j]); err != nil {
			return actingFor{}, fmt.Errorf("call extension: forwarded-for entry %d: %w", j+1, err)
		}
	}
	return a, nil
}
