package broker

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/testkit"
)

func TestCallsOverEveryTransport(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, newService(), nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		root := cl.Root()

		var out []byte
		require.NoError(t, root.Call(ctx, "Echo", &out, []byte("hello")))
		assert.Equal(t, []byte("hello"), out)

		s, err := Call[string](ctx, root, "Concat", "teth", "er")
		require.NoError(t, err)
		assert.Equal(t, "tether", s)

		n, err := Call[int](ctx, root, "Sum", 1, 2, 3, 4)
		require.NoError(t, err)
		assert.Equal(t, 10, n)

		require.NoError(t, root.Call(ctx, "Nothing", nil))

		big := bytes.Repeat([]byte{7}, 1<<20) // goes on a message stream
		require.NoError(t, root.Call(ctx, "Echo", &out, big))
		assert.Equal(t, big, out)
	})
}

func TestErrorsKeepIdentity(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, newService(), nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		root := cl.Root()

		err := root.Call(ctx, "NotFound", nil)
		assert.ErrorIs(t, err, errNotFound)
		var re *RemoteError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, "test.not-found", re.Name)
		assert.Contains(t, re.Message, "looking up alice")

		err = root.Call(ctx, "Invalid", nil, "email")
		var ve *validationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, "email", ve.Field)
		assert.Equal(t, "must not be empty", ve.Reason)

		err = root.Call(ctx, "Fail", nil, "plain failure")
		require.ErrorAs(t, err, &re)
		assert.Equal(t, "error", re.Name)
		assert.Equal(t, "plain failure", re.Message)
		assert.False(t, errors.Is(err, ErrDeadReference))

		err = root.Call(ctx, "Expire", nil)
		assert.ErrorIs(t, err, context.DeadlineExceeded, "context errors stay context errors")
		require.ErrorAs(t, err, &re, "and say they came from the far side")
		assert.Equal(t, "context.deadline-exceeded", re.Name)

		err = root.Call(ctx, "NoSuchMethod", nil)
		assert.ErrorIs(t, err, ErrUnknownMethod)

		err = root.Call(ctx, "Add", nil, 1)
		assert.ErrorIs(t, err, ErrBadArguments)
		err = root.Call(ctx, "Add", nil, "one", 2)
		assert.ErrorIs(t, err, ErrBadArguments)
		assert.Contains(t, err.Error(), "argument 1")

		err = root.Call(ctx, "Panic", nil)
		assert.ErrorIs(t, err, ErrPanic)
		require.ErrorAs(t, err, &re)
		assert.Empty(t, re.Traceback, "tracebacks cross only when the server opts in")

		// The connection still serves after all of that.
		n, err := Call[int](ctx, root, "Add", 2, 3)
		require.NoError(t, err)
		assert.Equal(t, 5, n)
	})
}

func TestCallbackOverSameConnection(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, newService(), nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		l := &listener{got: make(chan string, 1)}
		got, err := Call[string](ctx, cl.Root(), "Callback", l, "ping")
		require.NoError(t, err)
		assert.Equal(t, "ack:ping", got)
		assert.Equal(t, "ping", <-l.got)
	})
}
