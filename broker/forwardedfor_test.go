package broker

// Regression tests for the second adversarial review: the forwarded-for
// "hop" of each entry was the ID of a connection, which whoever accepted
// the connection chooses, and a process that dialed a hostile server took
// the ID its Welcome named, unchecked. Hops are now each process's own
// random tokens (Conn.hopID), and a Welcome's ID is bounded.

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// hostileAcceptor runs the accepting side of a handshake over nc the way a
// hostile server would: it admits whoever dials and names the connection
// id in its Welcome, whatever id it likes. It returns the server's *Conn.
func hostileAcceptor(t *testing.T, nc net.Conn, id string, root any) *Conn {
	t.Helper()
	o, err := buildOptions(serverSide, []Option{WithName("mallory")})
	require.NoError(t, err)
	co := newCoalescer(nc, o)
	sess, err := yamux.Server(co, yamuxConfig(o))
	require.NoError(t, err)
	st, err := sess.AcceptStream()
	require.NoError(t, err)
	fr := cborx.NewFrameReader(st, handshakeMax, handshakeBufferSize)
	body, err := fr.Next()
	require.NoError(t, err)
	h, err := parseHello(body)
	require.NoError(t, err)
	co.admit()
	e := getEncoder(nil)
	e.buf = appendWelcome(e.buf, welcome{version: protocolVersion, name: o.name, id: id, maxMessage: uint64(o.maxMessageSize)})
	// A dialer that refuses the Welcome may have closed already: the
	// write's error is not the test's concern, and a require here would
	// end this goroutine without an answer.
	_, _ = st.Write(e.frame())
	putEncoder(e)
	fr.SetMax(o.maxMessageSize)
	fr.Grow(readBufferSize)
	peer := remoteable.Peer{Addr: nc.RemoteAddr(), ID: id, Name: h.name}
	c := newConn(o, co, sess, st, fr, peer, clampMax(h.maxMessage), root).start()
	t.Cleanup(func() { c.Close(); <-c.Done() })
	return c
}

// vault is the upstream's guarded service: only the relay, acting for
// nobody else, may read the secret.
type vault struct{ remoteable.Referenceable }

func (vault) RemotePolicy() remoteable.Policy { return remoteable.AcceptOnlyFrom("relay") }
func (vault) Secret(ctx context.Context) (string, error) {
	p, _ := remoteable.PeerFrom(ctx)
	return "the secret, read by " + p.Name + " for " + formatIDs(p.ForwardedFor), nil
}

func formatIDs(ids []remoteable.Identity) string {
	s := "["
	for i, id := range ids {
		if i > 0 {
			s += " "
		}
		s += id.Name + "/" + id.VerifiedBy
	}
	return s + "]"
}

// bridge is what the relay offers the server it dials: a handler calling
// on, with its caller's context, so that the upstream judges that caller
// (docs/security.md § Calls passed on).
type bridge struct {
	remoteable.Referenceable
	up *Ref
}

func (b *bridge) Secret(ctx context.Context) (string, error) {
	var s string
	err := b.up.Call(ctx, "Secret", &s)
	return s, err
}

// asker is the relay's root for its upstream: the upstream may ask it to
// ping the other server it is connected to, which it does for the
// upstream (with the handler's context).
type asker struct {
	remoteable.Referenceable
	m atomic.Pointer[Conn]
}

func (a *asker) Ask(ctx context.Context) error { return a.m.Load().Root().Call(ctx, "Hello", nil) }

// spy is the hostile server's root: it reads the hops of the calls it
// receives, which the wire carries in the clear.
type spy struct {
	remoteable.Referenceable
	hops chan []string
}

func (s *spy) Hello(ctx context.Context) error {
	x, _ := ctx.Value(callKey{}).(*callCtx)
	var h []string
	if x != nil {
		h = append(h, x.hops...)
	}
	s.hops <- h
	return nil
}

// TestReview2ForgedConnectionIDDropsTheAttacker: a relay dials its
// upstream U, whose vault admits the relay alone, and another server M to
// which it offers a bridge: a handler that calls U with its caller's
// context, so that U judges M. Before the fix M learned the ID of the
// relay's link to U from the hop of a call the relay passed on to it for U,
// named that ID in its Welcome when the relay dialed it again, and so had
// the relay take M's own entry for the callee's and drop it: U admitted
// the call as the relay's own. Now the hop is the relay's own token, which
// no Welcome can name: M is refused however it forges its ID.
func TestReview2ForgedConnectionIDDropsTheAttacker(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	upSrv, up := startServer(t, vault{}, WithAuthenticator(Tokens(map[string]string{"relay": "r"})))
	ask := &asker{}
	upConn := dial(t, up, WithName("relay"), WithToken("r"), WithRoot(ask))
	y := upConn.Peer().ID
	br := &bridge{up: upConn.Root()}
	sp := &spy{hops: make(chan []string, 1)}

	// The relay dials M; M is honest about the connection's ID.
	a1, b1 := net.Pipe()
	mc := make(chan *Conn, 1)
	go func() { mc <- hostileAcceptor(t, b1, uuid.NewString(), sp) }()
	r1, err := NewConn(ctx, a1, WithName("relay"), WithRoot(br))
	require.NoError(t, err)
	m1 := <-mc
	ask.m.Store(r1)
	var s string
	err = m1.Root().Call(ctx, "Secret", &s)
	require.ErrorIs(t, err, remoteable.ErrAccessDenied, "M is refused")

	// U asks the relay to ping M: M reads the hop of U's entry.
	uSide, ok := upSrv.Conn(y)
	require.True(t, ok)
	require.NoError(t, uSide.Root().Call(ctx, "Ask", nil))
	hops := <-sp.hops
	require.Len(t, hops, 1)
	require.NotContains(t, hops, y, "a hop is not the connection's ID")
	r1.Close()
	<-r1.Done()

	// The relay dials M again, and M names, as its connection's ID, both
	// what it read and the ID of the relay's link to U: it is refused all
	// the same.
	for _, forged := range []string{hops[0], y} {
		a2, b2 := net.Pipe()
		go func() { mc <- hostileAcceptor(t, b2, forged, sp) }()
		r2, err := NewConn(ctx, a2, WithName("relay"), WithRoot(br))
		require.NoError(t, err)
		m2 := <-mc
		err = m2.Root().Call(ctx, "Secret", &s)
		require.ErrorIs(t, err, remoteable.ErrAccessDenied, "M read the vault with the forged ID %q: %q", forged, s)
		r2.Close()
		<-r2.Done()
	}
}

// TestReview2LongConnectionIDKillsTheRelaysUpstreamLink: before the fix a
// hostile server named a 100-byte connection ID, which the relay then sent
// its upstream as a hop, and the upstream closed the relay's link on the
// protocol violation. Now a dialer refuses such a Welcome, and hops are the
// relay's own tokens anyway.
func TestReview2LongConnectionIDKillsTheRelaysUpstreamLink(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, up := startServer(t, vault{}, WithAuthenticator(Tokens(map[string]string{"relay": "r"})))
	upConn := dial(t, up, WithName("relay"), WithToken("r"))
	br := &bridge{up: upConn.Root()}

	a, b := net.Pipe()
	mc := make(chan *Conn, 1)
	go func() { mc <- hostileAcceptor(t, b, strings.Repeat("x", 100), nil) }()
	_, err := NewConn(ctx, a, WithName("relay"), WithRoot(br))
	require.ErrorIs(t, err, ErrProtocol)
	require.ErrorContains(t, err, "connection ID is 100 bytes")
	<-mc
	require.NoError(t, upConn.Err(), "the relay's upstream link is untouched")
}
