package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/remoteable"
)

// protocolVersion is the version this implementation speaks.
const protocolVersion = 1

// ProtocolVersion is the version of the wire protocol (docs/protocol.md)
// this implementation speaks; a handshake refuses a peer that speaks
// another.
const ProtocolVersion = protocolVersion

// handshakeMax bounds a Hello/Welcome frame: they are small.
const handshakeMax = 16 << 10

// handshakeBufferSize is the server's read buffer for the main stream until
// the handshake completes (then readBufferSize): a peer not yet let in
// costs little.
const handshakeBufferSize = 1 << 10

// Dial connects to a Tether server at addr (as net.Dial understands network
// and addr), runs TLS if WithTLS was given, and performs the handshake. ctx
// bounds the dial and the handshake; it has no effect once Dial returns.
func Dial(ctx context.Context, network, addr string, opts ...Option) (*Conn, error) {
	o, err := buildOptions(dialSide, opts)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if o.tlsConfig != nil {
		cfg := o.tlsConfig
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg = cfg.Clone()
				cfg.ServerName = host
			}
		}
		nc = tls.Client(nc, cfg)
	}
	c, err := clientHandshake(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// NewConn runs Tether's dialing side over an established net.Conn (a pipe, a
// socket from elsewhere), with TLS first if WithTLS was given. On error nc is
// closed.
func NewConn(ctx context.Context, nc net.Conn, opts ...Option) (*Conn, error) {
	o, err := buildOptions(dialSide, opts)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if o.tlsConfig != nil {
		nc = tls.Client(nc, o.tlsConfig)
	}
	c, err := clientHandshake(ctx, nc, o)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// clientHandshake runs the dialing side's handshake over nc and starts the
// connection.
func clientHandshake(ctx context.Context, nc net.Conn, o *options) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.handshakeTimeout)
	defer cancel()
	peer := remoteable.Peer{Addr: nc.RemoteAddr()}
	tc, _ := nc.(*tls.Conn)
	if tc != nil {
		st, err := tlsHandshake(ctx, tc, true)
		if err != nil {
			return nil, err
		}
		peer.TLS = st
	}
	co := newCoalescer(nc, o)
	sess, err := yamux.Client(co, yamuxConfig(o))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	main, fr, body, err := sendHello(ctx, sess, co, o)
	if !stop() || err != nil {
		sess.Close()
		return nil, dialFailed(ctx, co, tc != nil, err)
	}
	w, err := acceptWelcome(body)
	if err != nil {
		sess.Close()
		return nil, err
	}
	main.SetDeadline(time.Time{})
	id := identifyServer(w.name, peer.TLS)
	peer.Name, peer.VerifiedBy, peer.ID = id.Name, id.VerifiedBy, w.id
	return newConn(o, co, sess, main, fr, peer, clampMax(w.maxMessage), o.root).start(), nil
}

// tlsHandshake runs the TLS handshake of a connection before Tether's,
// returning its state.
func tlsHandshake(ctx context.Context, tc *tls.Conn, dialer bool) (*tls.ConnectionState, error) {
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, tlsHandshakeErr(err, dialer)
	}
	st := tc.ConnectionState()
	return &st, nil
}

// drainRefused lets a dialer this server refused during TLS read the alert
// that says why. A TLS 1.3 dialer finishes its side of the handshake before
// the server checks its certificate, and writes at once; closing a socket
// with those bytes unread would send a reset, and the dialer's kernel would
// drop the alert still unread with it: the refusal would look like a server
// that hung up. So the write side is shut (the alert, then an orderly end)
// and what the dialer sent is read and dropped, for at most a second and 64
// KiB (less if ctx ends first), before the caller closes the connection.
func drainRefused(ctx context.Context, tc *tls.Conn) {
	raw, ok := tc.NetConn().(*net.TCPConn)
	if !ok {
		return
	}
	raw.CloseWrite()
	dl := time.Now().Add(time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	raw.SetReadDeadline(dl)
	stop := context.AfterFunc(ctx, func() { raw.SetReadDeadline(time.Now()) }) // the server closing
	defer stop()
	io.Copy(io.Discard, io.LimitReader(raw, 64<<10))
}

// sendHello opens the main stream, sends the Hello and reads the answer's
// body.
func sendHello(ctx context.Context, sess *yamux.Session, co *coalescer, o *options) (*yamux.Stream, *cborx.FrameReader, []byte, error) {
	st, err := sess.OpenStream()
	if err != nil {
		return nil, nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	co.wakeOnClose(st)
	defer co.wakeOnClose(nil)
	e := getEncoder(nil)
	e.buf = appendHello(e.buf, hello{version: protocolVersion, name: o.name, token: o.token, maxMessage: uint64(o.maxMessageSize)})
	// yamux may report a write as failed when the session closed right
	// after it went out (a server refusing us closes at once), so the
	// answer is read even then: a Reject says more than the write error.
	_, werr := st.Write(e.frame())
	putEncoder(e)
	fr := cborx.NewFrameReader(st, o.maxMessageSize, readBufferSize)
	body, err := fr.Next()
	if err != nil {
		if werr != nil {
			err = werr
		}
		return nil, nil, nil, closedReadErr(sess, err)
	}
	return st, fr, body, nil
}

// closedReadErr is err from a handshake's read of a stream of sess, with a
// read that wakeOnClose ended reported as what it is, the session's end
// (io.EOF, as yamux reports a read of a closed session), not a timeout.
func closedReadErr(sess *yamux.Session, err error) error {
	if errors.Is(err, yamux.ErrTimeout) && sess.IsClosed() {
		return io.EOF
	}
	return err
}

// dialFailed reports a dialer's handshake that got no answer: a TLS alert
// refusing this side's certificate, the context's end, or a server that
// closed without a word.
func dialFailed(ctx context.Context, co *coalescer, usedTLS bool, err error) error {
	if usedTLS {
		// With TLS 1.3 the server checks our certificate after our
		// side of the TLS handshake is done: its alert refusing it is
		// what ended the session.
		if r := tlsRefusal(co.lastReadErr(), true); r != nil {
			return r
		}
	}
	err = handshakeErr(ctx, err)
	if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
		// Closed without a word: a Tether server does that only to a
		// connection over its handshake limits (or a peer that broke
		// the protocol, which this implementation does not).
		err = fmt.Errorf("%w (the server closed the connection without answering: it may be over its limit "+
			"of handshakes in progress, in all or from this host, so retry later; a remote.Client does; "+
			"or it is not a Tether server)", err)
	}
	return err
}

// acceptWelcome reads the server's answer to the Hello: a Welcome in this
// side's version, or a refusal.
func acceptWelcome(body []byte) (welcome, error) {
	w, err := parseWelcome(body)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) {
			return w, refusalFromServer(re)
		}
		return w, err
	}
	if w.version != protocolVersion {
		return w, &refusedError{sentinel: ErrVersionMismatch, cause: ErrVersionMismatch,
			msg:   fmt.Sprintf("%v: the server speaks version %d, this dialer %d", ErrVersionMismatch, w.version, protocolVersion),
			hint:  "upgrade the older side",
			short: "speaks another protocol version than its server"}
	}
	return w, nil
}

// handshakeErr reports a failed handshake, as the context's error when the
// handshake ran out of time or was cancelled.
func handshakeErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	} else if isTimeout(err) {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("tether: handshake: %w", err)
}

// clampMax bounds the largest message a peer says it accepts to what this
// side will send: at least 1 KiB, at most 1 TiB.
func clampMax(n uint64) int {
	if n < 1024 {
		return 1024
	}
	if n > 1<<40 {
		return 1 << 40
	}
	return int(n)
}

// serverHandshake runs the accepting side's handshake over nc. The
// connection it returns is not started yet.
func serverHandshake(ctx context.Context, nc net.Conn, o *options, root any) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.handshakeTimeout)
	defer cancel()
	a := accepting{o: o, root: root, peer: remoteable.Peer{Addr: nc.RemoteAddr(), ID: uuid.NewString()}}
	if tc, ok := nc.(*tls.Conn); ok {
		st, err := tlsHandshake(ctx, tc, false)
		if err != nil {
			if errors.Is(err, ErrAuthFailed) {
				drainRefused(ctx, tc)
			}
			return nil, err
		}
		a.peer.TLS = st
	}
	a.co = newCoalescer(nc, o)
	sess, err := yamux.Server(a.co, yamuxConfig(o))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	err = a.exchange(ctx, sess)
	if !stop() || err != nil || a.refusal != nil {
		sess.Close()
		return nil, a.failed(ctx, err)
	}
	a.main.SetDeadline(time.Time{})
	a.fr.SetMax(o.maxMessageSize)
	a.fr.Grow(readBufferSize)
	c := newConn(o, a.co, sess, a.main, a.fr, a.peer, clampMax(a.peerMax), a.root)
	c.perPeerRoot = o.realm != nil
	return c, nil
}

// accepting is a server's handshake in progress.
type accepting struct {
	o       *options
	co      *coalescer
	peer    remoteable.Peer
	root    any // the server's, or the one a realm chose for this peer
	main    *yamux.Stream
	fr      *cborx.FrameReader
	peerMax uint64
	refusal error // why the dialer is not let in
}

// exchange reads the dialer's Hello on the first stream it opens and
// answers it.
func (a *accepting) exchange(ctx context.Context, sess *yamux.Session) error {
	st, err := sess.AcceptStreamWithContext(ctx)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		st.SetDeadline(dl)
	}
	a.main = st
	a.fr = cborx.NewFrameReader(st, handshakeMax, handshakeBufferSize)
	a.co.wakeOnClose(st)
	body, err := a.fr.Next()
	a.co.wakeOnClose(nil)
	if err != nil {
		return closedReadErr(sess, err)
	}
	h, err := parseHello(body)
	a.refusal = a.judge(ctx, h, err)
	a.peerMax = h.maxMessage
	return a.answer(st)
}

// judge decides whether the dialer of Hello h (err if it was malformed)
// may come in, and who it is; it returns the refusal.
func (a *accepting) judge(ctx context.Context, h hello, err error) error {
	switch {
	case err != nil:
		return err
	case h.version != protocolVersion:
		return fmt.Errorf("%w: client speaks %d, server speaks %d", ErrVersionMismatch, h.version, protocolVersion)
	case a.o.token != "" && !tokensEqual(h.token, a.o.token):
		return fmt.Errorf("%w: wrong or missing token", ErrAuthFailed)
	}
	id, err := identifyDialer(ctx, a.o, Credentials{Name: h.name, Token: h.token, TLS: a.peer.TLS, Addr: a.peer.Addr})
	if err == nil {
		if err = checkIdentity(id); err != nil {
			err = fmt.Errorf("%w: %w", ErrAuthFailed, err)
		}
	}
	if err != nil {
		return err
	}
	a.peer.Name, a.peer.VerifiedBy = id.Name, id.VerifiedBy
	if a.o.realm == nil {
		return nil
	}
	root, refusal := avatar(ctx, a.o.realm, a.peer)
	a.root = root
	return refusal
}

// answer sends the Welcome, or the Reject that says why the dialer is
// refused.
func (a *accepting) answer(st *yamux.Stream) error {
	e := getEncoder(nil)
	defer putEncoder(e)
	if a.refusal != nil {
		encodeReject(e, publicRefusal(a.refusal, a.o))
	} else {
		a.co.admit() // before the Welcome: the peer may send more once it has it
		e.buf = appendWelcome(e.buf, welcome{version: protocolVersion, name: a.o.name, id: a.peer.ID, maxMessage: uint64(a.o.maxMessageSize)})
	}
	_, err := st.Write(e.frame())
	return err
}

// failed reports a server's handshake that did not let the dialer in.
func (a *accepting) failed(ctx context.Context, err error) error {
	if a.refusal != nil {
		return a.refusal
	}
	if v := a.co.violation(); v != nil {
		return fmt.Errorf("tether: handshake: %w", inner{v})
	}
	return handshakeErr(ctx, err)
}

// publicRefusal is a refusal as the refused dialer may read it: an
// authenticator's or a realm's error may wrap a network error of this
// process (a directory it could not reach), whose addresses the dialer
// must not learn (see package hop). The refusal keeps its name.
func publicRefusal(refusal error, o *options) error {
	msg, redacted := hop.Redact(refusal, hop.Self{Name: o.name, Role: "server"})
	if !redacted {
		return refusal
	}
	o.logger.Debug("tether: a handshake refusal sent without its local detail", "sent", msg, "err", refusal)
	return &publicText{msg: msg, err: refusal}
}

// publicText is an error that reads msg and unwraps to err, whose name it
// travels under.
type publicText struct {
	msg string
	err error
}

func (p *publicText) Error() string { return p.msg }
func (p *publicText) Unwrap() error { return p.err }

// newHopID returns a connection's hop token (Conn.hopID).
func newHopID() string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on the systems Go supports
	}
	return hex.EncodeToString(b[:])
}
