package broker

// This file holds the figures a connection and a server report about
// themselves.

// ConnStats is a snapshot of a connection's resources and traffic.
type ConnStats struct {
	CallsOut  int   `json:"callsOut"`  // calls this side is waiting on
	CallsIn   int   `json:"callsIn"`   // handlers running for the peer
	Exports   int   `json:"exports"`   // objects this side holds for the peer (the root included)
	Imports   int   `json:"imports"`   // references to the peer's objects this side holds (not the root)
	Observers int   `json:"observers"` // the peer's mirrors of this side's models (subscriptions this side feeds)
	Mirrors   int   `json:"mirrors"`   // this side's mirrors of the peer's models
	BytesOut  int64 `json:"bytesOut"`  // bytes written to the network connection, yamux framing included
	BytesIn   int64 `json:"bytesIn"`   // bytes read from it
	Writes    int64 `json:"writes"`    // write calls on the network connection (system calls, for TCP)
	Reads     int64 `json:"reads"`     // read calls on it
}

// Stats returns a snapshot of the connection's resources.
func (c *Conn) Stats() ConnStats {
	s := c.refs.stats()
	s.CallsOut = int(c.callsOut.Load())
	s.CallsIn = int(c.callsIn.Load())
	s.BytesOut, s.BytesIn = c.co.written.Load(), c.co.read.Load()
	s.Writes, s.Reads = c.co.writes.Load(), c.co.reads.Load()
	return s
}

// stats counts the reference tables' entries.
func (t *refTables) stats() ConnStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := ConnStats{Exports: len(t.exports), Imports: len(t.imports)}
	for _, ex := range t.exports {
		switch ex.obj.(type) {
		case cacheSubscription:
			s.Observers++
		case cacheObserver:
			s.Mirrors++
		}
	}
	return s
}

// add sums another connection's figures into s.
func (s *ConnStats) add(o ConnStats) {
	s.CallsOut += o.CallsOut
	s.CallsIn += o.CallsIn
	s.Exports += o.Exports
	s.Imports += o.Imports
	s.Observers += o.Observers
	s.Mirrors += o.Mirrors
	s.BytesOut += o.BytesOut
	s.BytesIn += o.BytesIn
	s.Writes += o.Writes
	s.Reads += o.Reads
}

// ServerStats is a snapshot of a server's connections: the sums of their
// ConnStats, and how many peers were accepted and refused since the server
// started. It encodes as JSON for expvar:
//
//	expvar.Publish("tether", expvar.Func(func() any { return srv.Stats() }))
type ServerStats struct {
	Conns      int   `json:"conns"`      // live connections
	Handshakes int   `json:"handshakes"` // Serve's handshakes in progress (see WithHandshakeLimits)
	Accepted   int64 `json:"accepted"`   // peers that completed the handshake
	Refused    int64 `json:"refused"`    // peers that did not (bad token, timeout, protocol, TLS, over the handshake limits)
	ConnStats
}

// Stats returns a snapshot of the server's resources.
func (s *Server) Stats() ServerStats {
	st := ServerStats{Accepted: s.accepted.Load(), Refused: s.refused.Load()}
	s.mu.Lock()
	st.Handshakes = s.handshakes
	s.mu.Unlock()
	for _, c := range s.Conns() {
		st.Conns++
		st.ConnStats.add(c.Stats())
	}
	return st
}
