package broker

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// badText is a Go string that is not valid UTF-8: CBOR text strings must
// be, so it cannot be sent as one.
const badText = "caf\xe9"

// textual is a manager whose results carry a string that is not valid
// UTF-8 in each of the shapes the encoder treats differently.
type textual struct{}

func (textual) Echo(s string) (string, error)         { return s, nil }
func (textual) Names(ss []string) (int, error)        { return len(ss), nil }
func (textual) Bad() (string, error)                  { return badText, nil }
func (textual) BadList() ([]string, error)            { return []string{"ok", badText}, nil }
func (textual) BadKey() (map[string]int, error)       { return map[string]int{badText: 1}, nil }
func (textual) BadField() (struct{ N string }, error) { return struct{ N string }{badText}, nil }
func (textual) Fail() error                           { return errors.New(badText) }

// TestInvalidUTF8IsRefusedAtTheSender: a string that is not valid UTF-8,
// as an argument or in a result, is a typed error at the side that tried
// to send it (ErrBadArguments naming the argument, ErrBadReply naming the
// method), and the connection goes on serving.
func TestInvalidUTF8IsRefusedAtTheSender(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, 30*time.Second)
	_, addr := startServer(t, textual{})
	c := dial(t, addr)
	root := c.Root()

	err := root.Call(ctx, "Echo", nil, badText)
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "argument 1 of Echo")
	assert.Contains(t, err.Error(), "UTF-8")

	err = root.Call(ctx, "Names", nil, []string{"ok", badText})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "argument 1 of Names")

	for _, m := range []string{"Bad", "BadList", "BadKey", "BadField"} {
		err = root.Call(ctx, m, nil)
		require.ErrorIs(t, err, ErrBadReply, m)
		assert.Contains(t, err.Error(), m)
		assert.Contains(t, err.Error(), "UTF-8", m)
	}

	// An error's text is for people: its invalid bytes are replaced, and
	// the error arrives.
	err = root.Call(ctx, "Fail", nil)
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "caf\uFFFD", re.Message)

	// Metadata values and method names are text on the wire too.
	err = root.Call(WithOutgoingMetadata(ctx, Metadata{"k": badText}), "Echo", nil, "x")
	require.ErrorIs(t, err, ErrInvalidMetadata)
	err = root.Call(ctx, badText, nil)
	require.ErrorIs(t, err, ErrUnknownMethod)
	assert.Contains(t, err.Error(), "UTF-8")

	// A RawCopyable's type name is text too.
	err = root.Call(ctx, "Echo", nil, &RawCopyable{Name: badText})
	require.ErrorIs(t, err, ErrBadArguments)
	assert.Contains(t, err.Error(), "UTF-8")

	// The connection is unharmed: the same client goes on calling.
	var got string
	require.NoError(t, root.Call(ctx, "Echo", &got, "café"))
	assert.Equal(t, "café", got)
	assert.NoError(t, c.Err())
}
