package feed

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBriefOutageIsReported: a feed whose source goes out of reach and
// comes back while its subscription's batch is in flight still tells the
// observer, as a stale batch and then a live one. Before, the subscription
// built nothing for an outage it never saw (stale was false again when it
// looked), so mirrors downstream of a relay missed short outages of the
// relay's upstream (TestChaosThreeHops failed about once in ten runs).
func TestBriefOutageIsReported(t *testing.T) {
	f := New(0, nil)
	f.Set(enc("k"), enc(1))
	s := &Subscription{f: f}
	f.mu.Lock()
	defer f.mu.Unlock()
	b := s.build() // the first batch: a snapshot
	require.NotNil(t, b)
	for b != nil {
		b = s.build()
	}

	// The outage begins and ends before the subscription looks again.
	f.setStaleLocked(true)
	f.setStaleLocked(false)

	b = s.build()
	require.NotNil(t, b, "the outage is reported")
	require.True(t, b.Stale)
	require.Empty(t, b.Steps)
	b = s.build()
	require.NotNil(t, b)
	require.False(t, b.Stale, "then the source is live again")
	require.Nil(t, s.build(), "once")

	// An outage the subscription saw is not reported twice.
	f.setStaleLocked(true)
	b = s.build()
	require.True(t, b.Stale)
	f.setStaleLocked(false)
	b = s.build()
	require.False(t, b.Stale)
	require.Nil(t, s.build())
}
