package broker

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"

	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/remoteable"
)

// refusedError is how a handshake that the other side refused reaches the
// dialer: the server answered with a refusal (a wrong token, another
// protocol version, a realm with no root for the peer), or TLS did not
// verify a certificate (the server's, here, or ours, there). Such a
// refusal lasts until someone changes a configuration, unlike an outage.
// It matches its sentinel (ErrAuthFailed, ErrVersionMismatch or
// remoteable.ErrAccessDenied) and its cause (what the server's refusal
// stands for, or the TLS error), but not *RemoteError: it is not an error
// a call returned. It reads once: what happened, then what to check.
type refusedError struct {
	sentinel error
	msg      string // what happened, starting "tether: "
	hint     string // what to do
	short    string // what a peer of this process reads: see Redacted
	cause    error
}

func (e *refusedError) Error() string { return e.msg + " (" + e.hint + ")" }

// Unwrap returns the sentinel first, so that a relay passing the error on
// sends it under the sentinel's name, then the cause.
func (e *refusedError) Unwrap() []error {
	if e.sentinel == nil {
		return []error{e.cause}
	}
	return []error{e.sentinel, e.cause}
}

var _ hop.Failure = (*refusedError)(nil)

// Redacted implements hop.Failure: a peer of a relay whose own dial was
// refused reads which hop was refused and why in general terms, not the
// upstream's address or the server's words.
func (e *refusedError) Redacted(hopName string) string {
	if e.sentinel == nil {
		return fmt.Sprintf("tether: handshake refused: %s %s", hopName, e.short)
	}
	return fmt.Sprintf("%v: %s %s", e.sentinel, hopName, e.short)
}

// isRefusal reports whether err is a refused handshake: a dial that will
// keep failing the same way until the server's or the dialer's
// configuration changes, as opposed to an outage.
func isRefusal(err error) bool {
	return errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrVersionMismatch) ||
		errors.Is(err, remoteable.ErrAccessDenied)
}

// refusalFromServer is the dialer's error for the server's refusal re.
// It names no address: the dialer knows what it dialed (a remote.Client
// says it in its Stats), and an error passed on must not tell.
func refusalFromServer(re *RemoteError) error {
	msg := re.Message
	if !strings.HasPrefix(msg, "tether: ") {
		msg = "tether: handshake refused: " + msg
	}
	const at = "the server"
	var cause error = re
	if u := re.Unwrap(); u != nil {
		cause = u
	}
	e := &refusedError{msg: msg, cause: cause}
	switch {
	case errors.Is(re, ErrAuthFailed):
		e.sentinel = ErrAuthFailed
		e.hint = at + " refused this dialer's credentials: check its WithToken, WithName and TLS certificate"
		e.short = "was refused by its server: its credentials were not accepted"
	case errors.Is(re, ErrVersionMismatch):
		e.sentinel = ErrVersionMismatch
		e.hint = at + " speaks another protocol version: upgrade the older side"
		e.short = "was refused by its server: they speak different protocol versions"
	case errors.Is(re, remoteable.ErrAccessDenied):
		e.sentinel = remoteable.ErrAccessDenied
		e.hint = at + " knows this dialer but gives it nothing to call: ask the server's operator"
		e.short = "was refused by its server: it has no root for it"
	default:
		// Refused for another reason (a protocol violation, an unregistered
		// error of another implementation): reported as it came, as a
		// *RemoteError.
		e.hint = "refused by " + at
		e.short = "was refused by its server"
	}
	return e
}

// alertHandshakeFailure is TLS's handshake_failure alert.
const alertHandshakeFailure = 40

// Alerts with which a TLS peer refuses a certificate (RFC 8446 6.2).
var certificateAlerts = map[uint8]bool{
	42:  true, // bad_certificate
	43:  true, // unsupported_certificate
	44:  true, // certificate_revoked
	45:  true, // certificate_expired
	46:  true, // certificate_unknown
	48:  true, // unknown_ca
	49:  true, // access_denied
	116: true, // certificate_required
}

// tlsRefusal returns err, a failed TLS handshake (or a read of the
// connection that TLS failed), as a refusal matching ErrAuthFailed when
// it is one: this side could not verify the peer's certificate, or the
// peer sent an alert refusing ours. Otherwise it returns nil. dialer says
// which side this is, for the hint.
func tlsRefusal(err error, dialer bool) error {
	var (
		cve *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
	)
	if errors.As(err, &cve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		e := &refusedError{sentinel: ErrAuthFailed, cause: err,
			msg: fmt.Sprintf("%v: the peer's TLS certificate did not verify: %v", ErrAuthFailed, err)}
		if dialer {
			e.hint = "the server's certificate must be signed by a CA in WithTLS's RootCAs and name the host dialed, or ServerName"
			e.short = "could not verify its server's TLS certificate"
		} else {
			e.hint = "the dialer's certificate must be signed by a CA in the server's ClientCAs"
			e.short = "could not verify its peer's TLS certificate"
		}
		return e
	}
	if !dialer && err != nil && strings.Contains(err.Error(), "tls: client didn't provide a certificate") {
		// crypto/tls has no type for it.
		return &refusedError{sentinel: ErrAuthFailed, cause: err,
			msg:   fmt.Sprintf("%v: the dialer presented no TLS certificate", ErrAuthFailed),
			hint:  "the server requires one signed by a CA in its ClientCAs",
			short: "was not given a TLS certificate by its peer"}
	}
	a, ok := tlsAlert(err)
	if ok && a == alertHandshakeFailure && dialer {
		// What a TLS 1.2 server sends a dialer without the certificate it
		// requires, and when the two have no cipher suite or version in
		// common: a refusal too, until one side's configuration changes.
		return &refusedError{sentinel: ErrAuthFailed, cause: err,
			msg:   fmt.Sprintf("%v: the server refused the TLS handshake: %v", ErrAuthFailed, err),
			hint:  "the server may want a client certificate it trusts (WithTLS's Certificates), or other TLS versions or cipher suites",
			short: "was refused by its server during TLS"}
	}
	if ok && certificateAlerts[a] {
		e := &refusedError{sentinel: ErrAuthFailed, cause: err,
			msg: fmt.Sprintf("%v: the peer refused this side's TLS certificate: %v", ErrAuthFailed, err)}
		if dialer {
			e.hint = "the server wants a client certificate it trusts: give one in WithTLS's Certificates"
			e.short = "was refused by its server: its TLS certificate was not accepted"
		} else {
			e.hint = "the dialer does not trust the server's certificate: check the server's WithTLS Certificates and the dialer's RootCAs"
			e.short = "was refused by its peer: its TLS certificate was not accepted"
		}
		return e
	}
	return nil
}

// tlsAlert returns the alert a TLS peer sent, if err is one: crypto/tls
// reports it as a *net.OpError "remote error" around an unexported alert
// type (tls.AlertError only with QUIC).
func tlsAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 || v.Type().PkgPath() != "crypto/tls" {
		return 0, false
	}
	return uint8(v.Uint()), true
}

// tlsHandshakeErr is the error of a failed TLS handshake: a refusal when
// it is one, else the failure as it is.
func tlsHandshakeErr(err error, dialer bool) error {
	if r := tlsRefusal(err, dialer); r != nil {
		return r
	}
	return fmt.Errorf("tether: TLS handshake: %w", err)
}
