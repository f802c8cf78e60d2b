package remote

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// ownerAsker calls Owner on the account it is given.
type ownerAsker struct{ remoteable.Referenceable }

func (ownerAsker) OwnerOf(ctx context.Context, a *broker.Ref) (string, error) {
	return broker.Call[string](ctx, a, "Owner")
}

// TestReleasedWrapperPassedOnStillWorks: unlike a *broker.Ref, which is
// refused once released (broker.ErrReleased), a *remote.Ref stays usable
// after Release, so one passed to a third party is not a reference that
// always fails: the third party's calls on it obtain the target again.
func TestReleasedWrapperPassedOnStillWorks(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	a := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	b := startServer(t, "127.0.0.1:0", ownerAsker{})
	users, err := connect(t, a.addr).Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	var acct *Ref
	require.NoError(t, users.Call(ctx, "Account", &acct, "alice"))
	acct.Release()

	toB, err := broker.Dial(ctx, "tcp", b.addr)
	require.NoError(t, err)
	t.Cleanup(func() { toB.Close(); <-toB.Done() })
	owner, err := broker.Call[string](ctx, toB.Root(), "OwnerOf", acct)
	require.NoError(t, err)
	assert.Equal(t, "a/alice", owner)
}

// TestWrapperOfClosedClientIsRefusedWhenSent: a *remote.Ref whose Client
// was closed cannot reach its target again, so sending it to a third
// party is refused at the sender with broker.ErrClosed, naming the
// argument, rather than handing on a reference whose every call fails;
// the connection it was to go on keeps serving.
func TestWrapperOfClosedClientIsRefusedWhenSent(t *testing.T) {
	leakcheck.Check(t)
	ctx := testkit.Ctx(t, time.Minute)
	a := startServer(t, "127.0.0.1:0", publish(t, newUsers("a")))
	b := startServer(t, "127.0.0.1:0", ownerAsker{})
	cl := connect(t, a.addr)
	users, err := cl.Registry().Lookup(ctx, "users")
	require.NoError(t, err)
	var acct *Ref
	require.NoError(t, users.Call(ctx, "Account", &acct, "alice"))
	require.NoError(t, cl.Close())

	toB, err := broker.Dial(ctx, "tcp", b.addr)
	require.NoError(t, err)
	t.Cleanup(func() { toB.Close(); <-toB.Done() })
	before := toB.Stats().Exports
	_, err = broker.Call[string](ctx, toB.Root(), "OwnerOf", acct)
	require.ErrorIs(t, err, broker.ErrClosed)
	assert.Contains(t, err.Error(), "argument 1 of OwnerOf")
	assert.Contains(t, err.Error(), "remote.Client that was closed")
	assert.Equal(t, before, toB.Stats().Exports, "nothing was handed on")
	assert.NoError(t, toB.Err())

	// The manager's wrapper, from the same closed Client, is refused alike.
	_, err = broker.Call[string](ctx, toB.Root(), "OwnerOf", users)
	require.ErrorIs(t, err, broker.ErrClosed)
}
