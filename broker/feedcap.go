package broker

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// The built-in call that resumes a feed by its capability
// (docs/protocol.md §11.11): a mirror that lost its connection presents the
// token the feed's owner gave it with its subscription, on reference 0,
// and gets the feed back by reference, without replaying the call that
// returned the model. The token is the authority: it is issued only to
// subscribers, so the root's policy and a realm's per-peer roots are not
// asked (the Subscribe that follows is an ordinary call on the feed).

func init() {
	remoteable.RegisterError("tether.unknown-feed", captable.ErrUnknown)
	captable.SetLoggerOf(func(conn any) *slog.Logger {
		if c, ok := conn.(*Conn); ok && c != nil {
			return c.opts.logger
		}
		return nil
	})
	captable.SetIssuerOf(func(conn any) any {
		if c, ok := conn.(*Conn); ok && c != nil {
			return c.issuerOf()
		}
		return nil
	})
}

// issuerOf returns what feed tokens issued on c are valid for: its
// server, so that a peer that reconnects finds its feeds on any of the
// server's connections, or c itself for a dialed connection; and, when
// the server verified the peer's identity, that identity, so that a token
// issued to one authenticated peer is refused to another.
func (c *Conn) issuerOf() any {
	c.issuerM.Do(func() {
		if c.issuer == 0 {
			c.issuer = nextIssuer.Add(1)
		}
		c.issuerKey = strconv.FormatUint(c.issuer, 10)
		if c.peer.Verified() {
			c.issuerKey += "/" + strconv.Quote(c.peer.VerifiedBy) + "/" + strconv.Quote(c.peer.Name)
		}
	})
	return c.issuerKey
}

// nextIssuer numbers servers and dialed connections for feed tokens.
var nextIssuer atomic.Uint64

// readFeedCall decodes the arguments of a feed call, [token].
func readFeedCall(args cborx.Reader, argc int) (string, error) {
	if argc != 1 {
		return "", fmt.Errorf("%w: %s takes one argument, the feed's token; got %d", ErrBadArguments, captable.Method, argc)
	}
	if _, err := args.ReadArray(); err != nil {
		return "", fmt.Errorf("%w: malformed arguments", ErrBadArguments)
	}
	tok, err := args.ReadText()
	if err != nil || !captable.Valid(string(tok)) {
		return "", fmt.Errorf("%w: %s takes a token of %d lowercase hexadecimal digits", ErrBadArguments, captable.Method, captable.TokenLen)
	}
	return string(tok), nil
}

// startFeedCall starts a feed call, answered whatever the root is, or
// without one.
func (c *Conn) startFeedCall(in *callIn) error {
	tok, err := readFeedCall(in.args, in.argc)
	if err != nil {
		return rejection{err}
	}
	t := &inCall{id: in.id, ex: &export{}, name: captable.Method, name2: tok}
	t.cc.c = c
	t.ctx = &t.cc
	t.cc.deadline = deadlineOf(in.timeout)
	return c.startCall(t)
}

// feedByToken answers a feed call: the feed registered under the token,
// sent as a Cacheable, or captable.ErrUnknown.
func (c *Conn) feedByToken(t *inCall) (o outcome) {
	obj, ok := captable.Lookup(t.name2, c.issuerOf())
	if !ok {
		o.err = fmt.Errorf("%w: this server has no feed with that token (it restarted, or the model is gone): "+
			"obtain the model again", captable.ErrUnknown)
		return o
	}
	if r, ok := obj.(feedResumer); ok {
		r.FeedResumed(c.peerKey())
	}
	o.feed = obj
	return o
}

// peerKey is the peer's identity as the cache engine counts holders that
// left and came back: how its name was verified, and the name.
func (c *Conn) peerKey() string { return c.peer.VerifiedBy + "\x00" + c.peer.Name }
