package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// TestCodeOfLocalErrors checks the class of every sentinel, of wrapped
// sentinels and of context errors, on the side that made them.
func TestCodeOfLocalErrors(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Code
	}{
		{nil, OK},
		{errors.New("mine"), Unknown},
		{context.Canceled, Canceled},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), DeadlineExceeded},
		{ErrClosed, Canceled},
		{ErrServerClosed, Unavailable},
		{ErrPeerClosed, Unavailable},
		{ErrDeadReference, Unavailable},
		{ErrConnectionLost, Unavailable},
		{&linkError{inFlight: true, cause: ErrClosed}, Unavailable},
		{ErrWriteTimeout, Unavailable},
		{ErrReleased, FailedPrecondition},
		{ErrBadReply, InvalidArgument},
		{ErrNotCallable, InvalidArgument},
		{ErrInvalidOption, InvalidArgument},
		{ErrBadArguments, InvalidArgument},
		{ErrUnknownType, InvalidArgument},
		{ErrTooDeep, InvalidArgument},
		{ErrUnknownMethod, Unimplemented},
		{ErrVersionMismatch, Unimplemented},
		{ErrUnknownReference, NotFound},
		{ErrTooManyCalls, ResourceExhausted},
		{ErrTooManyReferences, ResourceExhausted},
		{ErrMessageTooLarge, ResourceExhausted},
		{ErrTooManyHops, ResourceExhausted},
		{ErrProtocol, Internal},
		{ErrPanic, Internal},
		{ErrAuthFailed, Unauthenticated},
		{remoteable.ErrUnverified, Unauthenticated},
		{remoteable.ErrAccessDenied, PermissionDenied},
		{NewError(NotFound, errors.New("no user")), NotFound},
		{fmt.Errorf("looking: %w", NewError(NotFound, errors.New("no user"))), NotFound},
		{NewError(Code(99), errors.New("odd")), Unknown},
	} {
		assert.Equal(t, c.want, CodeOf(c.err), "CodeOf(%v)", c.err)
	}
	assert.Nil(t, NewError(NotFound, nil))
}

// TestCodeNames checks that every code has a name that parses back, and
// that the numbers are gRPC's.
func TestCodeNames(t *testing.T) {
	grpc := map[Code]uint8{OK: 0, Canceled: 1, Unknown: 2, InvalidArgument: 3, DeadlineExceeded: 4, NotFound: 5,
		PermissionDenied: 7, ResourceExhausted: 8, FailedPrecondition: 9, Unimplemented: 12, Internal: 13,
		Unavailable: 14, Unauthenticated: 16}
	require.Len(t, Codes(), len(grpc))
	for _, c := range Codes() {
		assert.Equal(t, grpc[c], uint8(c), "%v", c)
		assert.NotContains(t, c.String(), "code(")
		back, ok := ParseCode(c.String())
		assert.True(t, ok)
		assert.Equal(t, c, back)
	}
	assert.Equal(t, "code(42)", Code(42).String())
	_, ok := ParseCode("teapot")
	assert.False(t, ok)
}

var errCodedNotFound = NewError(NotFound, errors.New("codes: no such thing"))

func init() { remoteable.RegisterError("broker.test.coded-not-found", errCodedNotFound) }

type coder struct{ remoteable.Referenceable }

func (coder) Unregistered() error { return NewError(PermissionDenied, errors.New("not yours")) }
func (coder) Registered() error   { return fmt.Errorf("looking up x: %w", errCodedNotFound) }
func (coder) Plain() error        { return errors.New("plain") }
func (coder) Take(n int) error    { return nil }
func (coder) Deny() error         { return fmt.Errorf("%w: members only", remoteable.ErrAccessDenied) }
func (coder) Slow(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestCodeOfTravels checks that a caller gets the code the handler's error
// had, for registered and unregistered errors, sentinels and errors
// classified with NewError.
func TestCodeOfTravels(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, coder{})
	c := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	for _, tc := range []struct {
		method string
		want   Code
		is     error
	}{
		{"Unregistered", PermissionDenied, nil},
		{"Registered", NotFound, errCodedNotFound},
		{"Plain", Unknown, nil},
		{"Deny", PermissionDenied, remoteable.ErrAccessDenied},
		{"Missing", Unimplemented, ErrUnknownMethod},
	} {
		err := c.Root().Call(ctx, tc.method, nil)
		require.Error(t, err, tc.method)
		var re *RemoteError
		require.ErrorAs(t, err, &re, tc.method)
		assert.Equal(t, tc.want, CodeOf(err), "%s: %v", tc.method, err)
		if tc.is != nil {
			assert.ErrorIs(t, err, tc.is)
		}
		assert.LessOrEqual(t, strings.Count(err.Error(), "tether:"), 1, "a repeated prefix: %v", err)
	}
	err := c.Root().Call(ctx, "Take", nil, 1, 2)
	assert.Equal(t, InvalidArgument, CodeOf(err), "%v", err)
	assert.ErrorContains(t, err, "Take takes 1 argument, got 2")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = c.Root().Call(short, "Slow", nil)
	assert.Equal(t, DeadlineExceeded, CodeOf(err), "%v", err)
}
