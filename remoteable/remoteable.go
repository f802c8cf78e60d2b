package remoteable

import (
	"context"
	"crypto/tls"
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

// Peer describes the other end of the connection a call came from.
type Peer struct {
	// ID identifies the connection. The accepting side assigns it (a UUID)
	// and both ends see the same value.
	ID string
	// Name is the name the peer announced in its handshake. It is only as
	// trustworthy as the connection's authentication (shared token or TLS).
	Name string
	// Addr is the peer's network address, if known.
	Addr net.Addr
	// TLS is the connection's TLS state, or nil for a connection without TLS.
	TLS *tls.ConnectionState
}

// PeerFrom returns the peer of the remote call that ctx belongs to. It
// reports false for a context that did not come from a remote call.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(typereg.PeerKey{}).(Peer)
	return p, ok
}
