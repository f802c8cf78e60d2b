package broker

import (
	"encoding/json"
	"expvar"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestServerStats: a server sums its connections and counts the peers it
// accepted and refused; the sums go back to nothing when the peers leave,
// and the snapshot publishes through expvar as JSON.
func TestServerStats(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService(), WithToken("s3cret"))
	st := srv.Stats()
	assert.Equal(t, ServerStats{}, st, "nothing yet")

	a := dial(t, addr, WithToken("s3cret"))
	b := dial(t, addr, WithToken("s3cret"))
	_, err := Dial(testCtx(t), "tcp", addr, WithToken("wrong"))
	require.ErrorIs(t, err, ErrAuthFailed)
	c1, err := Call[*Ref](testCtx(t), a.Root(), "NewCounter")
	require.NoError(t, err)
	_, err = Call[*Ref](testCtx(t), b.Root(), "NewCounter")
	require.NoError(t, err)

	eventually(t, func() bool { return srv.Stats().Exports == 4 }, "two roots and two counters")
	st = srv.Stats()
	assert.Equal(t, 2, st.Conns)
	assert.Equal(t, int64(2), st.Accepted)
	assert.Equal(t, int64(1), st.Refused, "the wrong token")
	assert.Positive(t, st.BytesIn)
	assert.Positive(t, st.BytesOut)
	assert.Equal(t, 1, a.Stats().Imports)

	v := expvar.Func(func() any { return srv.Stats() })
	var fromVar map[string]any
	require.NoError(t, json.Unmarshal([]byte(v.String()), &fromVar))
	assert.Equal(t, 4.0, fromVar["exports"])
	assert.Equal(t, 2.0, fromVar["conns"])

	c1.Release()
	eventually(t, func() bool { return srv.Stats().Exports == 3 }, "a released counter is dropped")
	a.Close()
	b.Close()
	<-a.Done()
	<-b.Done()
	eventually(t, func() bool { return srv.Stats().Conns == 0 }, "both gone")
	st = srv.Stats()
	assert.Equal(t, 0, st.Exports)
	assert.Equal(t, 0, st.CallsIn)
}
