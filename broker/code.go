package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tether-go/tether/internal/captable"
	"github.com/tether-go/tether/remoteable"
)

// Code classifies an error into a small closed set, so that programs,
// gateways and scripts can act on any error, local or remote, without
// knowing every sentinel: retry on Unavailable, fix the call on
// InvalidArgument, log in on Unauthenticated. CodeOf computes it.
//
// The numbers are gRPC's for the same meaning, so a gateway can pass them
// on; a registered error name (remoteable.RegisterError) says more than a
// code and stays the way to tell errors apart.
type Code uint8

// The codes. Every error has exactly one; nil has OK.
const (
	// OK is the code of a nil error.
	OK Code = 0
	// Canceled: the caller cancelled the call (its context), or closed the
	// connection or client it was made on.
	Canceled Code = 1
	// Unknown: an error that says nothing about its class, such as an
	// unregistered error a handler returned. Wrap it with NewError to
	// classify it.
	Unknown Code = 2
	// InvalidArgument: the call itself is wrong and fails the same way
	// every time: arguments of the wrong count or type, a reply that does
	// not fit, a value nested too deeply, a type the receiver does not
	// know, a manager declared wrongly.
	InvalidArgument Code = 3
	// DeadlineExceeded: the call's deadline passed before it finished. It
	// may have run.
	DeadlineExceeded Code = 4
	// NotFound: the named thing does not exist: a manager no one
	// registered, a reference the callee does not know.
	NotFound Code = 5
	// PermissionDenied: the caller is known but the target's policy does
	// not admit it.
	PermissionDenied Code = 7
	// ResourceExhausted: a quota or limit was hit: too many calls,
	// references, subscriptions, hops, or a message too large.
	ResourceExhausted Code = 8
	// FailedPrecondition: the call cannot be made in the current state
	// and will keep failing until the state changes: a released reference,
	// a mirror that can no longer follow its source.
	FailedPrecondition Code = 9
	// Unimplemented: the target has no such method, or the peer does not
	// speak this protocol version.
	Unimplemented Code = 12
	// Internal: something that should never happen did: a handler
	// panicked, a peer broke the protocol.
	Internal Code = 13
	// Unavailable: the link is down or died during the call. A call that
	// had not been sent can be retried; one that was in flight may have run
	// (ErrConnectionLost).
	Unavailable Code = 14
	// Unauthenticated: the server refused this side's credentials (a wrong
	// token, a certificate it does not trust, a name it did not verify).
	Unauthenticated Code = 16
)

var codeNames = map[Code]string{
	OK:                 "ok",
	Canceled:           "canceled",
	Unknown:            "unknown",
	InvalidArgument:    "invalid_argument",
	DeadlineExceeded:   "deadline_exceeded",
	NotFound:           "not_found",
	PermissionDenied:   "permission_denied",
	ResourceExhausted:  "resource_exhausted",
	FailedPrecondition: "failed_precondition",
	Unimplemented:      "unimplemented",
	Internal:           "internal",
	Unavailable:        "unavailable",
	Unauthenticated:    "unauthenticated",
}

// String returns the code's name in snake case ("invalid_argument"), as
// gRPC and Connect spell it.
func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Codes returns every code, in numeric order.
func Codes() []Code {
	return []Code{OK, Canceled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, PermissionDenied,
		ResourceExhausted, FailedPrecondition, Unimplemented, Internal, Unavailable, Unauthenticated}
}

// ParseCode returns the code named s (as String spells it), or Unknown and
// false.
func ParseCode(s string) (Code, bool) {
	for c, n := range codeNames {
		if strings.EqualFold(n, s) {
			return c, true
		}
	}
	return Unknown, false
}

// codedError is an error with a code given by NewError.
type codedError struct {
	code Code
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// NewError returns err classified as code: CodeOf reports code for it and
// for every error that wraps it, on this side and, when it is returned by a
// handler, on the caller's side too (the code travels with the error).
// errors.Is and errors.As see through it to err. Use it for a package's
// sentinels:
//
//	var ErrNoUser = broker.NewError(broker.NotFound, errors.New("users: no such user"))
//
// A nil err gives nil. An unknown code is Unknown.
func NewError(code Code, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := codeNames[code]; !ok || code == OK {
		code = Unknown
	}
	return &codedError{code: code, err: err}
}

// classes maps sentinels to their codes, most specific first: an error that
// matches several (ErrConnectionLost also matches ErrDeadReference) gets the
// first.
var classes = []struct {
	err  error
	code Code
}{
	{context.Canceled, Canceled},
	{context.DeadlineExceeded, DeadlineExceeded},
	{ErrAuthFailed, Unauthenticated},
	{remoteable.ErrUnverified, Unauthenticated},
	{remoteable.ErrAccessDenied, PermissionDenied},
	{ErrConnectionLost, Unavailable},
	{ErrDeadReference, Unavailable},
	{ErrWriteTimeout, Unavailable},
	{ErrServerClosed, Unavailable},
	{ErrPeerClosed, Unavailable},
	{ErrClosed, Canceled},
	{ErrReleased, FailedPrecondition},
	{ErrVersionMismatch, Unimplemented},
	{ErrUnknownMethod, Unimplemented},
	{ErrUnknownReference, NotFound},
	{captable.ErrUnknown, NotFound},
	{remoteable.ErrNoStub, FailedPrecondition},
	{remoteable.ErrNotCaller, InvalidArgument},
	{ErrBadArguments, InvalidArgument},
	{ErrInvalidOption, InvalidArgument},
	{ErrNotCallable, InvalidArgument},
	{ErrBadReply, InvalidArgument},
	{ErrUnknownType, InvalidArgument},
	{ErrTooDeep, InvalidArgument},
	{ErrInvalidMetadata, InvalidArgument},
	{ErrTooManyCalls, ResourceExhausted},
	{ErrTooManyReferences, ResourceExhausted},
	{ErrMessageTooLarge, ResourceExhausted},
	{ErrTooManyHops, ResourceExhausted},
	{ErrProtocol, Internal},
	{ErrPanic, Internal},
}

// CodeOf returns err's code: OK for nil; the code given by NewError
// anywhere in err's chain (the outermost wins); otherwise the code of the
// first of the package's sentinels (and context's, and remoteable's access
// errors) that err matches; otherwise, for an error that came from a peer,
// the code it had there (a name this side knows wins over the code a peer
// sent); otherwise Unknown. It works alike on errors made here and
// errors returned by the far side, through any number of relays.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	var re *RemoteError
	if errors.As(err, &re) && re.code != OK {
		return re.code
	}
	return Unknown
}
