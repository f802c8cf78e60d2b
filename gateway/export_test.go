package gateway

import "time"

// DescriptionsCached is the number of descriptions the gateway keeps, for
// tests that check it does not grow with handles given out and let go.
func (g *Gateway) DescriptionsCached() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.descs)
}

// len is the number of handles kept, for tests of the table's bounds.
func (hs *handles) len() int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.byID)
}

// SetPingInterval sets how often an idle /watch stream gets a ping, for
// tests that check pings without waiting 15 s; it returns the restore.
func SetPingInterval(d time.Duration) (restore func()) {
	old := pingInterval
	pingInterval = d
	return func() { pingInterval = old }
}
