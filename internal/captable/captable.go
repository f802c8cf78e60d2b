package captable

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"weak"
)

// TokenLen is the length of a token's text: 128 random bits in lowercase
// hexadecimal.
const TokenLen = 32

// Valid reports whether s has the form of a token.
func Valid(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newToken returns 128 bits from crypto/rand as text.
func newToken() string {
	var b [TokenLen / 2]byte
	rand.Read(b[:]) // never fails (crypto/rand's documented promise since Go 1.24)
	return hex.EncodeToString(b[:])
}

var table = struct {
	sync.Mutex
	m map[string]*entry
}{m: map[string]*entry{}}

// entry is one feed: how to get it while it lives, and the issuers
// (servers, see SetIssuerOf) that gave its token to a subscriber.
type entry struct {
	get     func() any
	issuers map[any]struct{}
}

// Register gives p a new token and records it weakly: Lookup returns p
// while something else holds it, and the entry is deleted once p is
// collected or Remove is called.
func Register[T any](p *T) string {
	tok := newToken()
	w := weak.Make(p)
	table.Lock()
	table.m[tok] = &entry{get: func() any {
		if v := w.Value(); v != nil {
			return v
		}
		return nil
	}}
	table.Unlock()
	runtime.AddCleanup(p, Remove, tok)
	return tok
}

// Issue records that issuer gave tok to a subscriber: from now on the
// token is valid there.
func Issue(tok string, issuer any) {
	if issuer == nil {
		return
	}
	table.Lock()
	defer table.Unlock()
	e := table.m[tok]
	if e == nil {
		return
	}
	if e.issuers == nil {
		e.issuers = map[any]struct{}{}
	}
	e.issuers[issuer] = struct{}{}
}

// Lookup returns the object registered under tok, if it is still there
// and issuer gave the token out: a token is valid only where it was
// issued (so that a second server of the process, or one that replaced a
// stopped server, does not answer for the first one's feeds).
func Lookup(tok string, issuer any) (any, bool) {
	table.Lock()
	e := table.m[tok]
	var get func() any
	if e != nil {
		if _, ok := e.issuers[issuer]; ok {
			get = e.get
		}
	}
	table.Unlock()
	if get == nil {
		return nil, false
	}
	v := get()
	return v, v != nil
}

// Remove deletes tok's entry: the feed no longer answers to it.
func Remove(tok string) {
	table.Lock()
	delete(table.m, tok)
	table.Unlock()
}

// SourceHook is told the token of the feed a mirror's source refers to.
type SourceHook func(src any, token string)

var sourceHook atomic.Pointer[SourceHook]

// SetSourceHook installs h (the remote package does, for its Refs). Only
// one hook is supported; a later call replaces it.
func SetSourceHook(h SourceHook) { sourceHook.Store(&h) }

// TellSource passes the token of the feed src refers to to the installed
// hook, if any.
func TellSource(src any, token string) {
	if h := sourceHook.Load(); h != nil {
		(*h)(src, token)
	}
}

var issuerOf atomic.Pointer[func(conn any) any]

// SetIssuerOf installs the function that returns what tokens issued on a
// connection are valid for (the broker does: the connection's server, or
// the connection itself).
func SetIssuerOf(fn func(conn any) any) { issuerOf.Store(&fn) }

// IssuerOf returns what tokens issued on conn are valid for, or nil.
func IssuerOf(conn any) any {
	if fn := issuerOf.Load(); fn != nil {
		return (*fn)(conn)
	}
	return nil
}

var loggerOf atomic.Pointer[func(conn any) *slog.Logger]

// SetLoggerOf installs the function that returns a connection's logger
// (the broker does, for its Conns).
func SetLoggerOf(fn func(conn any) *slog.Logger) { loggerOf.Store(&fn) }

// LoggerOf returns the logger of conn (a *broker.Conn), or nil.
func LoggerOf(conn any) *slog.Logger {
	if fn := loggerOf.Load(); fn != nil {
		return (*fn)(conn)
	}
	return nil
}

// Method is the built-in call, on reference 0, that presents a token and
// returns the feed registered under it. Its name cannot be a Go method's.
const Method = "tether.feed"

// ErrUnknown is what the built-in call returns for a token that names no
// feed of the process: it restarted, the model is gone, or the token was
// never issued.
var ErrUnknown = errors.New("tether: unknown feed token")
