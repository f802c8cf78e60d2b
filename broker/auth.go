package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/tether-go/tether/remoteable"
)

// Credentials is what a dialing peer presented in its handshake: what an
// Authenticator checks. Only what the connection's TLS verified is proof;
// Name and Token are whatever the peer chose to send.
type Credentials struct {
	// Name is the name the peer announced (its WithName).
	Name string
	// Token is the secret the peer sent (its WithToken).
	Token string
	// TLS is the connection's TLS state, or nil without TLS. A client
	// certificate in it was verified only if VerifiedChains is not empty.
	TLS *tls.ConnectionState
	// Addr is the peer's network address.
	Addr net.Addr
}

// Certificate returns the names the peer's verified TLS certificate gives
// (see CertificateNames), or nil when the peer presented no certificate or
// the connection's TLS did not verify it.
func (c Credentials) Certificate() []string { return verifiedNames(c.TLS) }

// An Authenticator decides who a dialing peer is, once per connection,
// before the connection is up: Twisted cred's checker. It returns the
// peer's identity (remoteable.Peer.Name and VerifiedBy for every call the
// peer makes), or an error to refuse the peer, which then fails with
// ErrAuthFailed. Returning an identity with an empty VerifiedBy admits the
// peer unverified. It runs on the accepting goroutine of that connection,
// bounded by the handshake timeout (ctx).
type Authenticator interface {
	Authenticate(ctx context.Context, cr Credentials) (remoteable.Identity, error)
}

// AuthenticatorFunc adapts a function to an Authenticator.
type AuthenticatorFunc func(ctx context.Context, cr Credentials) (remoteable.Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, cr Credentials) (remoteable.Identity, error) {
	return f(ctx, cr)
}

// WithAuthenticator makes a server verify every dialing peer with a: the
// identity it returns is the peer's (remoteable.Peer), and an error refuses
// the peer with ErrAuthFailed. Without one, a server verifies a peer by its
// TLS client certificate when the connection's TLS verified one (the
// announced name must then be empty or one of the certificate's names),
// and otherwise knows only the name the peer announced, unverified. A
// server option; it replaces WithToken on a server (a server given both
// refuses to start): check Credentials.Token in the authenticator instead.
func WithAuthenticator(a Authenticator) Option {
	return option{"WithAuthenticator", serverSide, func(o *options) {
		if a == nil {
			o.fail(errors.New("tether: WithAuthenticator(nil): pass an authenticator, or leave the option out"))
			return
		}
		if t, ok := a.(*tokenTable); ok && t.err != nil {
			o.fail(t.err)
			return
		}
		o.authenticator = a
	}}
}

// Tokens returns an Authenticator that verifies a peer by a per-peer
// secret: the peer announces its name (WithName) and sends the token the
// table holds for that name (WithToken). The identity it gives is the name,
// verified by remoteable.VerifiedByToken. Tokens are compared in constant
// time, length included; an unknown name and a wrong token are refused
// alike. The table is copied. An empty name or token in the table (an
// unset environment variable, say) would admit anyone who sends none:
// WithAuthenticator refuses such a table, naming the entry.
func Tokens(table map[string]string) Authenticator {
	t := &tokenTable{digests: make(map[string][32]byte, len(table))}
	for name, tok := range table {
		switch {
		case name == "":
			t.err = errors.New("tether: Tokens: the table has an entry with an empty name")
		case tok == "" && t.err == nil:
			t.err = fmt.Errorf("tether: Tokens: the token for %q is empty, which would verify anyone who sends none as %q", name, name)
		}
		t.digests[name] = sha256.Sum256([]byte(tok))
	}
	return t
}

// tokenTable is Tokens' authenticator: the SHA-256 digest of each peer's
// token, so that comparisons take the same time whatever the lengths.
type tokenTable struct {
	digests map[string][32]byte
	err     error // an invalid table, reported by WithAuthenticator
}

// noSuchPeer is compared against when the name is unknown, so that an
// unknown name takes as long as a wrong token.
var noSuchPeer = sha256.Sum256([]byte("\x00tether: no such peer\x00"))

func (t *tokenTable) Authenticate(_ context.Context, cr Credentials) (remoteable.Identity, error) {
	if t.err != nil {
		// WithAuthenticator refuses such a table; one wrapped in another
		// authenticator still fails closed.
		return remoteable.Identity{}, t.err
	}
	want, known := t.digests[cr.Name]
	if !known {
		want = noSuchPeer
	}
	got := sha256.Sum256([]byte(cr.Token))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 || !known || cr.Name == "" {
		return remoteable.Identity{}, fmt.Errorf("unknown name or wrong token for %q", cr.Name)
	}
	return remoteable.Identity{Name: cr.Name, VerifiedBy: remoteable.VerifiedByToken}, nil
}

// tokensEqual compares a token a peer sent with the expected one in
// constant time, length included.
func tokensEqual(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// CertificateNames returns the names a certificate gives its subject, the
// primary one first: the subject's common name, then its DNS names, URIs
// (a SPIFFE ID, say) and email addresses. A peer's verified certificate
// names it: its announced name must be one of these, and without one it is
// known by the first.
func CertificateNames(cert *x509.Certificate) []string {
	var names []string
	add := func(s string) {
		if s != "" && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	add(cert.Subject.CommonName)
	for _, n := range cert.DNSNames {
		add(n)
	}
	for _, u := range cert.URIs {
		add(u.String())
	}
	for _, e := range cert.EmailAddresses {
		add(e)
	}
	return names
}

// verifiedNames returns the names of the peer certificate the connection's
// TLS verified, or nil.
func verifiedNames(st *tls.ConnectionState) []string {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	return CertificateNames(st.PeerCertificates[0])
}

// identifyDialer decides the identity of a peer that sent hello: by the
// server's authenticator if it has one, else by its verified certificate,
// else as the name it announced, unverified. An error refuses the peer.
func identifyDialer(ctx context.Context, o *options, cr Credentials) (remoteable.Identity, error) {
	if o.authenticator != nil {
		id, err := authenticate(ctx, o, cr)
		if err != nil {
			return id, fmt.Errorf("%w: %w", ErrAuthFailed, err)
		}
		if id.VerifiedBy != "" && id.Name == "" {
			return id, fmt.Errorf("%w: the server's authenticator verified no name", ErrAuthFailed)
		}
		return id, nil
	}
	if names := cr.Certificate(); names != nil {
		switch {
		case cr.Name == "":
			return remoteable.Identity{Name: names[0], VerifiedBy: remoteable.VerifiedByTLS}, nil
		case slices.Contains(names, cr.Name):
			return remoteable.Identity{Name: cr.Name, VerifiedBy: remoteable.VerifiedByTLS}, nil
		}
		return remoteable.Identity{}, fmt.Errorf("%w: the peer announced the name %q, but its certificate names %q: "+
			"announce one of the certificate's names, or none", ErrAuthFailed, cr.Name, names)
	}
	return remoteable.Identity{Name: cr.Name}, nil
}

// authenticate runs a, refusing the peer if a panics: an authenticator's
// bug must not take the server down, least of all for a peer that is not
// yet let in.
func authenticate(ctx context.Context, o *options, cr Credentials) (id remoteable.Identity, err error) {
	defer func() {
		if p := recover(); p != nil {
			o.logger.Error("tether: the authenticator panicked; the peer is refused", "remote", cr.Addr, "panic", p)
			id, err = remoteable.Identity{}, errors.New("the server's authenticator panicked")
		}
	}()
	return o.authenticator.Authenticate(ctx, cr)
}

// identifyServer decides the identity of the server a dialer reached: the
// announced name is verified when the server's certificate, verified by
// TLS, gives it (without a name, the server is known by its certificate's
// first); otherwise it stays unverified, since a server's announced name is
// often not its host name.
func identifyServer(announced string, st *tls.ConnectionState) remoteable.Identity {
	names := verifiedNames(st)
	switch {
	case names == nil:
		return remoteable.Identity{Name: announced}
	case announced == "":
		return remoteable.Identity{Name: names[0], VerifiedBy: remoteable.VerifiedByTLS}
	case slices.Contains(names, announced):
		return remoteable.Identity{Name: announced, VerifiedBy: remoteable.VerifiedByTLS}
	}
	return remoteable.Identity{Name: announced}
}

// A Realm gives each peer, once authenticated, the root object it sees:
// Twisted cred's realm, whose avatars are per-identity roots. A peer can
// reach only what its root leads to, so a realm is the strongest access
// control Tether has: a guest's root simply has no admin methods. It runs
// once per connection, in the handshake, bounded by the handshake timeout
// (ctx); peer holds the identity decided (Name, VerifiedBy), the
// connection's ID, address and TLS state. An error refuses the peer, which
// then fails with remoteable.ErrAccessDenied and the error's message.
type Realm func(ctx context.Context, peer remoteable.Peer) (root any, err error)

// WithRealm makes a server publish to each peer the root realm gives it,
// instead of one root for all: use NewServer(nil, WithRealm(realm)). A
// server option.
func WithRealm(realm Realm) Option {
	return option{"WithRealm", serverSide, func(o *options) {
		if realm == nil {
			o.fail(errors.New("tether: WithRealm(nil): pass a realm, or leave the option out"))
			return
		}
		o.realm = realm
	}}
}

// avatar asks realm for peer's root. A panic or a nil root refuses the peer.
func avatar(ctx context.Context, realm Realm, peer remoteable.Peer) (root any, err error) {
	defer func() {
		if p := recover(); p != nil {
			root, err = nil, fmt.Errorf("%w: the server's realm panicked", remoteable.ErrAccessDenied)
		}
	}()
	root, err = realm(ctx, peer)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %v has no root here: %w", remoteable.ErrAccessDenied, peer.Identity(), err)
	case root == nil:
		return nil, fmt.Errorf("%w: the server's realm gave %v no root", remoteable.ErrAccessDenied, peer.Identity())
	}
	return root, nil
}
