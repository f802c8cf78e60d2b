package broker

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/yamux"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// protocolVersion is the version this implementation speaks.
const protocolVersion = 1

// handshakeMax bounds a Hello/Welcome frame: they are small.
const handshakeMax = 16 << 10

// Dial connects to a Tether server at addr (as net.Dial understands network
// and addr), runs TLS if WithTLS was given, and performs the handshake. ctx
// bounds the dial and the handshake; it has no effect once Dial returns.
func Dial(ctx context.Context, network, addr string, opts ...Option) (*Conn, error) {
	o, err := buildOptions(opts)
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
	o, err := buildOptions(opts)
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

func clientHandshake(ctx context.Context, nc net.Conn, o *options) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.handshakeTimeout)
	defer cancel()
	peer := remoteable.Peer{Addr: nc.RemoteAddr()}
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tether: TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		peer.TLS = &st
	}
	sess, err := yamux.Client(newCoalescer(nc), yamuxConfig(o))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	main, fr, welcome, err := func() (*yamux.Stream, *cborx.FrameReader, *cborx.Reader, error) {
		st, err := sess.OpenStream()
		if err != nil {
			return nil, nil, nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			st.SetDeadline(dl)
		}
		e := getEncoder(nil)
		e.buf = cborx.AppendArray(e.buf, 5)
		e.buf = cborx.AppendUint(e.buf, msgHello)
		e.buf = cborx.AppendUint(e.buf, protocolVersion)
		e.buf = cborx.AppendText(e.buf, o.name)
		e.buf = cborx.AppendText(e.buf, o.token)
		e.buf = cborx.AppendUint(e.buf, uint64(o.maxMessageSize))
		_, err = st.Write(e.frame())
		putEncoder(e)
		if err != nil {
			return nil, nil, nil, err
		}
		fr := cborx.NewFrameReader(st, o.maxMessageSize, readBufferSize)
		body, err := fr.Next()
		if err != nil {
			return nil, nil, nil, err
		}
		if err := cborx.Validate(body, decodeLimits); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		r := cborx.NewReader(body)
		return st, fr, &r, nil
	}()
	if !stop() || err != nil {
		sess.Close()
		return nil, handshakeErr(ctx, err)
	}
	n, err := welcome.ReadArray()
	if err != nil || n < 2 {
		sess.Close()
		return nil, fmt.Errorf("%w: malformed handshake reply", ErrProtocol)
	}
	typ, _ := welcome.ReadUint()
	switch typ {
	case msgReject:
		d := decoder{r: *welcome}
		re, err := d.wireError()
		sess.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: malformed handshake refusal", ErrProtocol)
		}
		return nil, fmt.Errorf("tether: handshake refused: %w", re)
	case msgWelcome:
	default:
		sess.Close()
		return nil, fmt.Errorf("%w: unexpected handshake reply %d", ErrProtocol, typ)
	}
	version, err1 := welcome.ReadUint()
	name, err2 := welcome.ReadText()
	id, err3 := welcome.ReadText()
	peerMax, err4 := welcome.ReadUint()
	if n < 5 || err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		sess.Close()
		return nil, fmt.Errorf("%w: malformed welcome", ErrProtocol)
	}
	if version != protocolVersion {
		sess.Close()
		return nil, fmt.Errorf("%w: server speaks %d, we speak %d", ErrVersionMismatch, version, protocolVersion)
	}
	main.SetDeadline(time.Time{})
	peer.Name, peer.ID = string(name), string(id)
	return newConn(o, sess, main, fr, peer, clampMax(peerMax), o.root).start(), nil
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
	peer := remoteable.Peer{Addr: nc.RemoteAddr(), ID: uuid.NewString()}
	if tc, ok := nc.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("tether: TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		peer.TLS = &st
	}
	sess, err := yamux.Server(newCoalescer(nc), yamuxConfig(o))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	var (
		main    *yamux.Stream
		fr      *cborx.FrameReader
		peerMax uint64
		refusal error
	)
	err = func() error {
		st, err := sess.AcceptStreamWithContext(ctx)
		if err != nil {
			return err
		}
		if dl, ok := ctx.Deadline(); ok {
			st.SetDeadline(dl)
		}
		main = st
		fr = cborx.NewFrameReader(st, handshakeMax, readBufferSize)
		body, err := fr.Next()
		if err != nil {
			return err
		}
		if err := cborx.Validate(body, decodeLimits); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		r := cborx.NewReader(body)
		n, err := r.ReadArray()
		typ, err1 := r.ReadUint()
		version, err2 := r.ReadUint()
		name, err3 := r.ReadText()
		token, err4 := r.ReadText()
		pm, err5 := r.ReadUint()
		if err != nil || n < 5 || typ != msgHello || errors.Join(err1, err2, err3, err4, err5) != nil {
			refusal = fmt.Errorf("%w: malformed hello", ErrProtocol)
		} else if version != protocolVersion {
			refusal = fmt.Errorf("%w: client speaks %d, server speaks %d", ErrVersionMismatch, version, protocolVersion)
		} else if o.token != "" && subtle.ConstantTimeCompare(token, []byte(o.token)) != 1 {
			refusal = fmt.Errorf("%w: wrong or missing token", ErrAuthFailed)
		}
		peer.Name, peerMax = string(name), pm

		e := getEncoder(nil)
		defer putEncoder(e)
		if refusal != nil {
			e.buf = cborx.AppendArray(e.buf, 2)
			e.buf = cborx.AppendUint(e.buf, msgReject)
			e.wireError(refusal)
		} else {
			e.buf = cborx.AppendArray(e.buf, 5)
			e.buf = cborx.AppendUint(e.buf, msgWelcome)
			e.buf = cborx.AppendUint(e.buf, protocolVersion)
			e.buf = cborx.AppendText(e.buf, o.name)
			e.buf = cborx.AppendText(e.buf, peer.ID)
			e.buf = cborx.AppendUint(e.buf, uint64(o.maxMessageSize))
		}
		_, err = st.Write(e.frame())
		return err
	}()
	if !stop() || err != nil || refusal != nil {
		sess.Close()
		if refusal != nil {
			return nil, refusal
		}
		return nil, handshakeErr(ctx, err)
	}
	main.SetDeadline(time.Time{})
	fr.SetMax(o.maxMessageSize)
	return newConn(o, sess, main, fr, peer, clampMax(peerMax), root), nil
}
