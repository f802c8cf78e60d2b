package remoteable

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"reflect"

	"github.com/tether-go/tether/internal/typereg"
)

// Referenceable is the marker a type embeds to be sent by reference:
//
//	type Printer struct {
//		remoteable.Referenceable
//		// ...
//	}
//
// Values of such a type must be sent as pointers (*Printer); the pointer is
// the object's identity. The marker has no fields and no exported methods.
type Referenceable struct{ _ [0]func() }

func (Referenceable) tetherReferenceable() {}

// marker is implemented by every type that embeds Referenceable.
type marker interface{ tetherReferenceable() }

func init() { typereg.ReferenceableMarker = reflect.TypeFor[marker]() }

// Caller is what can make a remote call: a reference to an object on the far
// side of a connection (*broker.Ref), or a wrapper that outlives connections
// (*remote.Ref). broker.Call[T] works on any Caller.
type Caller interface {
	// Call invokes method on the referenced object with args and decodes the
	// result into reply, which must be a non-nil pointer or nil to discard
	// the result.
	Call(ctx context.Context, method string, reply any, args ...any) error
}

// ExportObserver is implemented by objects that want to know when a
// connection starts and stops holding them for its peer. A proxy uses it to
// let go of what it holds further up a chain as soon as no peer holds the
// proxy, rather than when the garbage collector notices. Exported and
// Unexported are called once per connection, in pairs; an object sent on
// several connections sees several pairs.
type ExportObserver interface {
	Exported()
	Unexported()
}

// How a peer's name was verified: the values of Identity.VerifiedBy that
// Tether itself sets. An Authenticator (see broker.WithAuthenticator) may
// use a label of its own, such as "jwt".
const (
	// VerifiedByTLS: the name is one the peer's certificate gives, and the
	// connection's TLS verified that certificate.
	VerifiedByTLS = "tls"
	// VerifiedByToken: the peer presented the token that a per-peer table
	// (broker.Tokens) holds for the name.
	VerifiedByToken = "token"
)

// Identity is who a party to a call is: a name, and how it was verified.
type Identity struct {
	// Name is the party's name.
	Name string
	// VerifiedBy says how Name was verified: VerifiedByTLS,
	// VerifiedByToken, or an authenticator's own label. It is empty when
	// nothing verified the name: the party only announced it, and anyone
	// can announce any name.
	VerifiedBy string
}

// Verified reports whether the name was verified.
func (id Identity) Verified() bool { return id.VerifiedBy != "" }

// String shows the identity for logs and errors: "agent (verified by
// token)", or "agent (unverified)".
func (id Identity) String() string {
	name := fmt.Sprintf("%q", id.Name)
	if id.Name == "" {
		name = "an anonymous peer"
	}
	if id.VerifiedBy == "" {
		return name + " (unverified)"
	}
	return name + " (verified by " + id.VerifiedBy + ")"
}

// MaxForwardedFor bounds Peer.ForwardedFor: a call may be passed on through
// at most this many relays. The limit protects the receiver; a relay whose
// call would exceed it fails that call.
const MaxForwardedFor = 8

// Peer describes the other end of the connection a call came from, and who
// the call acts for.
type Peer struct {
	// ID identifies the connection. The accepting side assigns it (a UUID)
	// and both ends see the same value.
	ID string
	// Name is the peer's name: the identity the accepting side verified
	// when VerifiedBy is set (from the peer's TLS certificate, or by an
	// authenticator such as a per-peer token table), otherwise only the
	// name the peer announced in its handshake.
	Name string
	// VerifiedBy says how Name was verified (see Identity.VerifiedBy); it
	// is empty for an announced, unverified name.
	VerifiedBy string
	// Addr is the peer's network address, if known.
	Addr net.Addr
	// TLS is the connection's TLS state, or nil for a connection without TLS.
	TLS *tls.ConnectionState
	// ForwardedFor lists, for a call the peer passes on for others (a
	// relay forwarding a call, or a handler calling on with its context),
	// who it acts for: the party that started the call first, then each
	// party between it and the peer, each as the next hop verified it. It
	// is empty for a call the peer makes on its own behalf. Entries are
	// the peer's claims: they can only restrict what a policy allows (see
	// AcceptOnlyFrom), never widen it. At most MaxForwardedFor entries.
	ForwardedFor []Identity
}

// Identity returns the peer's own identity, without ForwardedFor.
func (p Peer) Identity() Identity { return Identity{Name: p.Name, VerifiedBy: p.VerifiedBy} }

// Verified reports whether the peer's name was verified.
func (p Peer) Verified() bool { return p.VerifiedBy != "" }

// Chain returns every party the call acts for: ForwardedFor, then the peer.
func (p Peer) Chain() []Identity {
	return append(append(make([]Identity, 0, len(p.ForwardedFor)+1), p.ForwardedFor...), p.Identity())
}

// PeerFrom returns the peer of the remote call that ctx belongs to. It
// reports false for a context that did not come from a remote call.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(typereg.PeerKey{}).(Peer)
	return p, ok
}
