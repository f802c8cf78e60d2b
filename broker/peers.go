package broker

// ConnByName returns the live connection of the peer that announced the
// given name in its handshake (WithName): the newest one, if the peer has
// several (an old link not yet found dead, and its replacement). It lets a
// server reach a peer by a stable identity the peer chooses, such as an
// agent's id, rather than by connection (Conn takes the per-connection
// remoteable.Peer.ID). The name is the peer's claim unless the server
// verified it (WithAuthenticator, or TLS: see remoteable.Peer.VerifiedBy):
// check Peer().Verified() before trusting it. A verified connection of the
// name is found before any unverified one, so that a peer announcing the
// name of a verified one cannot hide it. The empty name finds nothing.
func (s *Server) ConnByName(name string) (*Conn, bool) {
	if name == "" {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.named[name]; ok {
		return c, true
	}
	return nil, false
}

// rememberName makes c the connection ConnByName finds for its peer's
// name, unless the name's connection now is verified and c's is not: an
// unverified claim (anyone can announce any name) must not hide the peer
// the server verified. It runs with s.mu held.
func (s *Server) rememberName(c *Conn) {
	if c.peer.Name == "" {
		return
	}
	if old, ok := s.named[c.peer.Name]; ok && old.peer.Verified() && !c.peer.Verified() {
		return
	}
	s.named[c.peer.Name] = c
}

// forgetName drops c from the names index as it ends; another live
// connection of the same name takes its place, a verified one first. It
// runs with s.mu held.
func (s *Server) forgetName(c *Conn) {
	if c.peer.Name == "" || s.named[c.peer.Name] != c {
		return
	}
	delete(s.named, c.peer.Name)
	for other := range s.conns {
		if other.peer.Name != c.peer.Name {
			continue
		}
		if cur, ok := s.named[c.peer.Name]; !ok || (other.peer.Verified() && !cur.peer.Verified()) {
			s.named[c.peer.Name] = other
		}
	}
}
