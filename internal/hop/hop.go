package hop

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// Failure is implemented by the errors with which this process's own
// links fail: the broker's dead connections, the remote client's
// disconnected calls.
type Failure interface {
	error
	// Redacted is the error's text for a peer: its sentinel's text, the hop
	// (as Self.Hop gives it) and what the hop cannot reach, as that
	// announced itself; never an address or a cause of this process's.
	Redacted(hop string) string
}

// Self is how a process names itself in the errors it passes on.
type Self struct {
	// Name is the name the process announces to the peer, if any.
	Name string
	// Role is what the process is to the peer that reads the error, when
	// it passes on a failure of its own link: a "relay" (a process between
	// the peer and what failed), a "gateway".
	Role string
}

// Hop names the process in a failure of its own link: `relay "edge"`, or
// `the relay` when it announces no name.
func (s Self) Hop() string {
	if s.Name == "" {
		return "the " + s.Role
	}
	return s.Role + " " + strconv.Quote(s.Name)
}

// network is what a peer reads instead of a network error of the
// process's: a handler's error may wrap one without the process being a
// hop for the peer, so only its name is given, if it has one.
func (s Self) network() string {
	if s.Name == "" {
		return "a network error"
	}
	return "a network error at " + strconv.Quote(s.Name)
}

// Redact returns err's message as a peer may read it, and whether that
// differs from err.Error(). Every Failure in err's chain, and every
// network error of this process's own (net, DNS, TLS and certificate, URL
// and system-call errors), is replaced in the message by text that names
// the hop and what it cannot reach. The rest of the message (a handler's
// own words around a wrapped failure) is kept. When a replaced error's
// text cannot be found in the message, the message is the replacements
// alone: what else it says cannot be told apart from the address.
func Redact(err error, self Self) (string, bool) {
	var found []error
	collect(err, &found)
	if len(found) == 0 {
		return err.Error(), false
	}
	return replaceIn(err.Error(), found, self), true
}

// replaceIn returns msg with the text of each error in found replaced by
// what a peer reads instead, or those replacements alone when the text of
// one of them is not in msg.
func replaceIn(msg string, found []error, self Self) string {
	reps := make([]string, len(found))
	whole := false
	for i, f := range found {
		reps[i] = replacement(f, self)
		txt := f.Error()
		if txt == "" || !strings.Contains(msg, txt) {
			whole = true
			continue
		}
		msg = strings.ReplaceAll(msg, txt, reps[i])
	}
	if whole {
		return strings.Join(reps, "; ")
	}
	return msg
}

// replacement is what a peer reads instead of f.
func replacement(f error, self Self) string {
	if lf, ok := f.(Failure); ok {
		return lf.Redacted(self.Hop())
	}
	return self.network()
}

// collect appends the outermost Failures and network errors in err's tree.
func collect(err error, found *[]error) {
	if err == nil {
		return
	}
	if _, ok := err.(Failure); ok || isNetwork(err) {
		*found = append(*found, err)
		return
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		collect(u.Unwrap(), found)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			collect(e, found)
		}
	}
}

// isNetwork reports whether err itself (not its chain) is one of the
// standard library's network, name-resolution, TLS or system-call errors,
// whose texts carry addresses, host names and the system's words.
func isNetwork(err error) bool {
	switch err.(type) {
	case *net.OpError, *net.DNSError, *net.AddrError, *net.ParseError, net.UnknownNetworkError,
		*os.SyscallError, *url.Error,
		*tls.CertificateVerificationError, tls.RecordHeaderError, tls.AlertError,
		x509.HostnameError, x509.UnknownAuthorityError, x509.CertificateInvalidError:
		return true
	}
	// Other net.Error implementations (timeouts of connections, yamux's)
	// are link failures too; a context's deadline is not, though it
	// implements the interface.
	_, ok := err.(net.Error)
	return ok && !errors.Is(err, context.DeadlineExceeded)
}
