package broker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tether-go/tether/internal/arity"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/remoteable"
)

// Errors about the state of a connection or reference. They are local: the
// far side never sent them. Test for them with errors.Is.
var (
	// ErrClosed reports that the connection or server was closed locally.
	ErrClosed = errors.New("tether: closed")
	// ErrServerClosed is returned by Serve after Close.
	ErrServerClosed = errors.New("tether: server closed")
	// ErrDeadReference reports a call on a reference whose connection is
	// gone. The call was not sent.
	ErrDeadReference = errors.New("tether: dead reference")
	// ErrConnectionLost reports a call that was sent but whose connection
	// died before the result came back: the far side may or may not have
	// executed it. Errors that match it also match ErrDeadReference. Their
	// message names the method that was in flight and the peer (its
	// announced name and address; a relay passing one on names itself
	// and the peer, not the address).
	ErrConnectionLost = errors.New("tether: connection lost during call")
	// ErrReleased reports a call on a reference after its Release.
	ErrReleased = errors.New("tether: reference released")
	// ErrBadReply reports a result that cannot be decoded into the reply
	// value the caller supplied.
	ErrBadReply = errors.New("tether: result does not fit reply")
	// ErrProtocol reports a peer that broke the protocol; the connection is
	// closed.
	ErrProtocol = errors.New("tether: protocol violation")
	// ErrAuthFailed reports a handshake refused for a wrong or missing token.
	ErrAuthFailed = errors.New("tether: authentication failed")
	// ErrVersionMismatch reports peers that speak different protocol versions.
	ErrVersionMismatch = errors.New("tether: protocol version mismatch")
	// ErrWriteTimeout reports a peer that stopped reading: a write to it did
	// not complete within the write timeout, and the connection was closed.
	ErrWriteTimeout = errors.New("tether: write timed out; peer stopped reading")
)

// Errors the far side returns about a call. They arrive as a *RemoteError
// that wraps them, so both errors.Is(err, ErrUnknownMethod) and
// errors.As(err, &remoteErr) hold. The same values are returned locally when
// the problem is found before anything is sent.
var (
	// ErrUnknownReference reports a call on an object id the callee never
	// gave to the caller, or one already released.
	ErrUnknownReference = errors.New("tether: unknown reference")
	// ErrUnknownMethod reports a method the target does not expose.
	ErrUnknownMethod = errors.New("tether: unknown method")
	// ErrBadArguments reports arguments of the wrong number or type.
	ErrBadArguments = errors.New("tether: bad arguments")
	// ErrUnknownType reports a Copyable, error or reference kind the receiver
	// has not registered or does not understand.
	ErrUnknownType = errors.New("tether: unknown type")
	// ErrTooManyCalls reports a caller over its concurrent-call quota.
	ErrTooManyCalls = errors.New("tether: too many concurrent calls")
	// ErrTooManyReferences reports a connection over its exported-reference
	// quota.
	ErrTooManyReferences = errors.New("tether: too many references")
	// ErrMessageTooLarge reports a message over the receiver's size limit.
	ErrMessageTooLarge = errors.New("tether: message too large")
	// ErrPanic reports a handler that panicked.
	ErrPanic = errors.New("tether: handler panicked")
	// ErrTooManyHops reports a call that would act for more parties than
	// a call may carry (remoteable.MaxForwardedFor): it was passed on
	// through too many relays or handlers.
	ErrTooManyHops = errors.New("tether: call passed on through too many hops")
	// ErrTooDeep reports a value nested deeper than a peer accepts: a
	// message holds at most 32 levels of arrays, maps and tags (Copyables
	// and references count their tags), which leaves 30 for a call's
	// argument and 31 for a result. The sender refuses it before anything
	// is sent, failing the call (an argument) or sending this error instead
	// of the result, so the connection stays up; a model refuses a key or
	// value that its mirrors could not receive (see package cache). A
	// cyclic value is too deep too. Flatten the value or send it as bytes.
	ErrTooDeep = errors.New("tether: value nested too deeply")
)

func init() {
	for name, err := range map[string]error{
		"tether.unknown-reference":   ErrUnknownReference,
		"tether.unknown-method":      ErrUnknownMethod,
		"tether.bad-arguments":       ErrBadArguments,
		"tether.bad-reply":           ErrBadReply,
		"tether.unknown-type":        ErrUnknownType,
		"tether.too-many-calls":      ErrTooManyCalls,
		"tether.too-many-references": ErrTooManyReferences,
		"tether.message-too-large":   ErrMessageTooLarge,
		"tether.panic":               ErrPanic,
		"tether.too-many-hops":       ErrTooManyHops,
		"tether.too-deep":            ErrTooDeep,
		"tether.invalid-metadata":    ErrInvalidMetadata,
		"tether.released":            ErrReleased,
		"tether.dead-reference":      ErrDeadReference,
		"tether.connection-lost":     ErrConnectionLost,
	} {
		remoteable.RegisterError(name, err)
	}
}

// RemoteError is an error returned by the far side of a call. Name is the
// error's registered name (see remoteable.RegisterError), or its Go type for
// an unregistered error; Message is the full text of the error on the far
// side. When the name is registered locally too, the error unwraps to the
// registered value, so errors.Is and errors.As see it.
type RemoteError struct {
	Name      string
	Message   string
	Traceback string // only when the far side opted in (WithTracebacks)

	err    error  // the registered sentinel or decoded typed error, if any
	detail []byte // the CBOR of a typed error's fields, kept opaque for relays
	code   Code   // the error's code on the far side (see CodeOf), if it sent one
}

// Error returns the far side's message.
func (e *RemoteError) Error() string { return e.Message }

// Unwrap returns the registered error the remote error stands for, if any.
func (e *RemoteError) Unwrap() error { return e.err }

// linkError is what a call fails with when its connection died. It matches
// ErrDeadReference, ErrConnectionLost when the call was in flight, and the
// cause (ErrClosed, a network error, ...). Its text names the call's
// method and the peer, by the name it announced and its address; a peer
// of another connection reads neither the address nor the cause
// (Redacted).
type linkError struct {
	inFlight bool
	cause    error
	peer     string // the name the peer announced, if any
	addr     string // the peer's network address, if known
	method   string // the call's method, if the error is a call's
}

func (e *linkError) Error() string {
	to := "the peer"
	if e.peer != "" {
		to = "peer " + strconv.Quote(e.peer)
	}
	if e.addr != "" {
		to += " at " + e.addr
	}
	cause := bare(e.cause)
	switch {
	case e.inFlight && e.method != "":
		return fmt.Sprintf("%v: %q was in flight to %s when the connection ended (%s); it may or may not have run: "+
			"repeat it only if that is safe", ErrConnectionLost, e.method, to, cause)
	case e.inFlight:
		return fmt.Sprintf("%v: the connection to %s ended (%s) with the call in flight; it may or may not have run",
			ErrConnectionLost, to, cause)
	case e.method != "":
		return fmt.Sprintf("%v: %q was not sent: the connection to %s has ended (%s)", ErrDeadReference, e.method, to, cause)
	}
	return fmt.Sprintf("%v: the connection to %s has ended (%s)", ErrDeadReference, to, cause)
}

// bare is err's text without the "tether: " that begins it, for an error
// quoted inside another of the broker's own.
func bare(err error) string {
	if err == nil {
		return "no cause given"
	}
	return strings.TrimPrefix(err.Error(), "tether: ")
}

func (e *linkError) Is(target error) bool {
	return target == ErrDeadReference || (e.inFlight && target == ErrConnectionLost)
}

func (e *linkError) Unwrap() error { return e.cause }

// named returns err with method as its call's method, when err is a
// linkError that names none; other errors are returned as they are.
func named(err error, method string) error {
	if le, ok := err.(*linkError); ok && le.method == "" {
		cp := *le
		cp.method = method
		return &cp
	}
	return err
}

var _ hop.Failure = (*linkError)(nil)

// Redacted is the error's text for a peer of another connection (a relay
// passing on its upstream's failure): the sentinel, the hop, the peer it
// lost, by the name that peer announced, and the call's method; not the
// address or the cause, which names addresses and the system's words.
func (e *linkError) Redacted(hopName string) string {
	to := "its peer"
	if e.peer != "" {
		to = strconv.Quote(e.peer)
	}
	switch {
	case e.inFlight && e.method != "":
		return fmt.Sprintf("%v: %s lost its connection to %s while %q was in flight; it may or may not have run",
			ErrConnectionLost, hopName, to, e.method)
	case e.inFlight:
		return fmt.Sprintf("%v: %s lost its connection to %s", ErrConnectionLost, hopName, to)
	case e.method != "":
		return fmt.Sprintf("%v: %s has no connection to %s for %q", ErrDeadReference, hopName, to, e.method)
	}
	return fmt.Sprintf("%v: %s has no connection to %s", ErrDeadReference, hopName, to)
}

// argCountError is the one wording of a call with the wrong number of
// arguments, whichever side finds it: "Get takes 1 argument, got 2".
func argCountError(method string, lo, hi, got int) error {
	return fmt.Errorf("%w: %s takes %s, got %d", ErrBadArguments, method, arity.Words(lo, hi), got)
}

// inner is an error quoted inside another of the broker's own: it reads
// without its "tether: " prefix, and errors.Is and errors.As see it.
type inner struct{ err error }

func (i inner) Error() string { return bare(i.err) }
func (i inner) Unwrap() error { return i.err }
