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
// read only six). docs/protocol.md §5 describes it.
const (
	// extForwardedFor is the key of the identities a call acts for:
	// [[name, verifiedBy], ...], the original caller first.
	extForwardedFor = 1
)

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

// forwardedFor returns whom a call made with ctx on c acts for: nothing for
// a call not made from a handler (or made AsSelf); else the handler's
// caller after whoever that caller acted for. The caller is left out when
// the call goes back on the connection it came from (the callee is that
// caller), and so is every entry that is the callee itself as this side
// verified it: a party acting for itself needs nobody's permission.
func (c *Conn) forwardedFor(ctx context.Context, method string) ([]remoteable.Identity, error) {
	in, ok := ctx.Value(connKey{}).(*Conn)
	if !ok || ctx.Value(selfKey{}) != nil {
		return nil, nil
	}
	p, _ := remoteable.PeerFrom(ctx)
	chain := p.ForwardedFor
	if in != c {
		if err := checkIdentity(p.Identity()); err != nil {
			return nil, fmt.Errorf("%w: %s cannot say whom it acts for: %w", ErrTooManyHops, method, err)
		}
		chain = append(slices.Clip(chain), p.Identity())
	}
	if callee := c.peer; callee.VerifiedBy != "" && slices.Contains(chain, callee.Identity()) {
		chain = slices.DeleteFunc(slices.Clone(chain), func(id remoteable.Identity) bool { return id == callee.Identity() })
	}
	if len(chain) > remoteable.MaxForwardedFor {
		return nil, fmt.Errorf("%w: %s would act for %d parties, more than %d: make it with broker.AsSelf(ctx) "+
			"if this process acts on its own authority", ErrTooManyHops, method, len(chain), remoteable.MaxForwardedFor)
	}
	return chain, nil
}

// appendCallExt appends a call's extension map holding chain.
func appendCallExt(b []byte, chain []remoteable.Identity) []byte {
	b = cborx.AppendMap(b, 1)
	b = cborx.AppendUint(b, extForwardedFor)
	b = cborx.AppendArray(b, len(chain))
	for _, id := range chain {
		b = cborx.AppendArray(b, 2)
		b = cborx.AppendText(b, id.Name)
		b = cborx.AppendText(b, id.VerifiedBy)
	}
	return b
}

// errMalformedExt is the protocol violation of a call extension that is not
// what appendCallExt writes.
var errMalformedExt = errors.New("malformed call extension: want a map of small integer keys; " +
	"key 1 holds [[name, verifiedBy], ...]")

// parseCallExt reads a call's extension map. It returns ErrTooManyHops
// (for the caller) when the call acts for too many parties, and another
// error for a malformed map (a protocol violation).
func parseCallExt(r *cborx.Reader) ([]remoteable.Identity, error) {
	h, err := r.ReadHead()
	if err != nil || h.Major != cborx.MajorMap {
		return nil, errMalformedExt
	}
	var chain []remoteable.Identity
	for i := uint64(0); i < h.Arg; i++ {
		key, err := r.ReadUint()
		if err != nil {
			return nil, errMalformedExt
		}
		if key != extForwardedFor {
			if r.Skip() != nil {
				return nil, errMalformedExt
			}
			continue
		}
		n, err := r.ReadArray()
		if err != nil {
			return nil, errMalformedExt
		}
		if n > remoteable.MaxForwardedFor {
			return nil, fmt.Errorf("%w: the call acts for %d parties, more than %d", ErrTooManyHops, n, remoteable.MaxForwardedFor)
		}
		chain = make([]remoteable.Identity, n)
		for j := range chain {
			m, err1 := r.ReadArray()
			name, err2 := r.ReadText()
			by, err3 := r.ReadText()
			if m != 2 || errors.Join(err1, err2, err3) != nil {
				return nil, errMalformedExt
			}
			chain[j] = remoteable.Identity{Name: string(name), VerifiedBy: string(by)}
			if err := checkIdentity(chain[j]); err != nil {
				return nil, fmt.Errorf("call extension: forwarded-for entry %d: %w", j+1, err)
			}
		}
	}
	return chain, nil
}
