package remote_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remote"
)

// srvRecord is one SRV record of the test DNS server.
type srvRecord struct {
	target string
	port   uint16
}

// dnsServer is a tiny authoritative DNS server on loopback UDP: it answers
// A queries from hosts and SRV queries from srvs, AAAA with no record, and
// everything with SERVFAIL while failing is set.
type dnsServer struct {
	pc net.PacketConn

	mu      sync.Mutex
	hosts   map[string]string      // name (rooted, lower case) -> IPv4 address
	srvs    map[string][]srvRecord // name -> records
	failing bool
	asked   int // queries answered
}

// startDNS starts the server; the test's cleanup stops it.
func startDNS(t *testing.T) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &dnsServer{pc: pc, hosts: map[string]string{}, srvs: map[string][]srvRecord{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.serve()
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

// resolver returns a net.Resolver that asks only this server.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.pc.LocalAddr().String())
	}}
}

// set replaces the records under the server's lock.
func (s *dnsServer) set(f func(s *dnsServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// serve answers queries until the socket closes.
func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if reply := s.answer(buf[:n]); reply != nil {
			_, _ = s.pc.WriteTo(reply, from)
		}
	}
}

// answer builds the reply to one query, or nil for a malformed one.
func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	name, end, ok := readName(q, 12)
	if !ok || end+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[end : end+2])
	question := q[12 : end+4]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	var answers [][]byte
	rcode := uint16(0)
	switch {
	case s.failing:
		rcode = 2 // SERVFAIL
	case qtype == 1 && s.hosts[name] != "":
		a := netip.MustParseAddr(s.hosts[name]).As4()
		answers = append(answers, rr(1, a[:]))
	case qtype == 33 && len(s.srvs[name]) > 0:
		for _, r := range s.srvs[name] {
			data := binary.BigEndian.AppendUint16(nil, 1) // priority
			data = binary.BigEndian.AppendUint16(data, 1) // weight
			data = binary.BigEndian.AppendUint16(data, r.port)
			answers = append(answers, rr(33, appendName(data, r.target)))
		}
	case qtype != 28 && s.hosts[name] == "" && s.srvs[name] == nil:
		rcode = 3 // NXDOMAIN
	}
	out := append([]byte(nil), q[0:2]...)                                    // ID
	out = binary.BigEndian.AppendUint16(out, 0x8400|uint16(q[2]&1)<<8|rcode) // QR, AA, RD echoed
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(answers)))
	out = append(out, 0, 0, 0, 0)
	out = append(out, question...)
	for _, a := range answers {
		out = append(out, a...)
	}
	return out
}

// rr builds a resource record for the question's name (a pointer to it).
func rr(typ uint16, data []byte) []byte {
	out := []byte{0xC0, 12}
	out = binary.BigEndian.AppendUint16(out, typ)
	out = binary.BigEndian.AppendUint16(out, 1) // IN
	out = binary.BigEndian.AppendUint32(out, 1) // TTL
	out = binary.BigEndian.AppendUint16(out, uint16(len(data)))
	return append(out, data...)
}

// readName reads an uncompressed name at off, rooted and in lower case.
func readName(b []byte, off int) (string, int, bool) {
	var labels []string
	for off < len(b) {
		n := int(b[off])
		off++
		if n == 0 {
			return strings.ToLower(strings.Join(labels, ".")) + ".", off, true
		}
		if n > 63 || off+n > len(b) {
			return "", 0, false
		}
		labels = append(labels, string(b[off:off+n]))
		off += n
	}
	return "", 0, false
}

// appendName appends a rooted name as labels.
func appendName(b []byte, name string) []byte {
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// portOf returns the port of an endpoint's address.
func portOf(t *testing.T, ep remote.Endpoint) uint16 {
	ap, err := netip.ParseAddrPort(ep.Addr)
	require.NoError(t, err)
	return ap.Port()
}

// TestDNSResolverFollowsSRVRecords serves a fleet's SRV records from a DNS
// server on loopback: a Pool dials every target, follows the records as
// they change, keeps its clients while lookups fail (Err says why) and
// clears the error once they succeed again.
func TestDNSResolverFollowsSRVRecords(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 3)
	dns := startDNS(t)
	const name = "_tether._tcp.fleet.test."
	dns.set(func(s *dnsServer) {
		for _, f := range fleet {
			s.hosts[f.rep.name+".fleet.test."] = "127.0.0.1"
		}
		s.srvs[name] = []srvRecord{{"s0.fleet.test.", portOf(t, fleet[0].ep)}, {"s1.fleet.test.", portOf(t, fleet[1].ep)}}
	})
	r := remote.DNS(name, remote.WithNetResolver(dns.resolver()), remote.WithRefresh(50*time.Millisecond))
	ctx := testkit.Ctx(t, time.Minute)
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })

	whoAll := func() map[string]bool {
		got, _ := gatherWho(t, pool, 5*time.Second)
		seen := map[string]bool{}
		for _, who := range got {
			seen[who] = true
		}
		return seen
	}
	testkit.Eventually(t, "the pool reaches s0 and s1", func() bool {
		return len(pool.Clients()) == 2 && assert.ObjectsAreEqual(map[string]bool{"s0": true, "s1": true}, whoAll())
	})
	eps := pool.Endpoints()
	assert.Equal(t, "s0.fleet.test.", eps[0].Attrs["target"])

	dns.set(func(s *dnsServer) {
		s.srvs[name] = []srvRecord{{"s1.fleet.test.", portOf(t, fleet[1].ep)}, {"s2.fleet.test.", portOf(t, fleet[2].ep)}}
	})
	testkit.Eventually(t, "the pool follows the records to s1 and s2", func() bool {
		return len(pool.Clients()) == 2 && assert.ObjectsAreEqual(map[string]bool{"s1": true, "s2": true}, whoAll())
	})

	dns.set(func(s *dnsServer) { s.failing = true })
	testkit.Eventually(t, "the pool reports the failed lookups", func() bool { return errors.Is(pool.Err(), remote.ErrResolver) })
	assert.Len(t, pool.Clients(), 2, "a failed lookup keeps the last set")
	dns.set(func(s *dnsServer) { s.failing = false })
	testkit.Eventually(t, "the error clears", func() bool { return pool.Err() == nil })
}

// TestDNSResolverLooksAgainWhenEveryServerFails gives a ConnectAny client
// a host name whose refresh is an hour away: when its server stops and
// the name now gives another address, the failed pass makes the resolver
// look again at once, and the client reaches the server there.
func TestDNSResolverLooksAgainWhenEveryServerFails(t *testing.T) {
	leakcheck.Check(t)
	// s0 on 127.0.0.1:port and s1 on 127.0.0.2:port: one name and port,
	// two addresses.
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln0.Addr().(*net.TCPAddr).Port
	ln1, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
	if err != nil {
		ln0.Close()
		t.Skipf("127.0.0.2:%d is not usable here: %v", port, err)
	}
	_, stop0 := serveReplica(t, ln0, 0)
	serveReplica(t, ln1, 1)
	dns := startDNS(t)
	dns.set(func(s *dnsServer) { s.hosts["fleet.test."] = "127.0.0.1" })
	r := remote.DNS(net.JoinHostPort("fleet.test.", strconv.Itoa(port)), remote.WithNetResolver(dns.resolver()), remote.WithRefresh(time.Hour))
	ctx := testkit.Ctx(t, time.Minute)
	cl, err := remote.ConnectAny(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Close() })
	ref, err := cl.Registry().Lookup(remote.WaitForLink(ctx), "fleet")
	require.NoError(t, err)
	who, err := broker.Call[string](ctx, ref, "Who")
	require.NoError(t, err)
	require.Equal(t, "s0", who)

	dns.set(func(s *dnsServer) { s.hosts["fleet.test."] = "127.0.0.2" })
	stop0()
	testkit.Eventually(t, "the client reaches s1", func() bool {
		ep, ok := cl.Endpoint()
		return ok && strings.HasPrefix(ep.Addr, "127.0.0.2:")
	})
	who, err = broker.Call[string](remote.WaitForLink(ctx), ref, "Who")
	require.NoError(t, err)
	assert.Equal(t, "s1", who)
}

// TestDNSChecksItsName: a name that is neither host:port nor an SRV name,
// and a refresh that is not positive, fail ConnectAny at once.
func TestDNSChecksItsName(t *testing.T) {
	ctx := context.Background()
	_, err := remote.ConnectAny(ctx, remote.DNS("fleet.test"))
	require.ErrorIs(t, err, broker.ErrInvalidOption)
	_, err = remote.ConnectAll(ctx, remote.DNS("_t._tcp.fleet.test", remote.WithRefresh(0)))
	require.ErrorIs(t, err, broker.ErrInvalidOption)
}

// TestDNSResolverSkipsASRVTargetThatHasNoAddress: an SRV record whose
// target name no longer exists (a decommissioned host whose record is not
// yet removed) leaves that target out; the others are still named. (The
// whole lookup failed, so a client starting then had no server at all.)
// A set in which no target exists is a failed lookup.
func TestDNSResolverSkipsASRVTargetThatHasNoAddress(t *testing.T) {
	leakcheck.Check(t)
	fleet := startFleet(t, 1)
	dns := startDNS(t)
	const name = "_tether._tcp.fleet.test."
	dns.set(func(s *dnsServer) {
		s.hosts["s0.fleet.test."] = "127.0.0.1"
		s.srvs[name] = []srvRecord{{"gone.fleet.test.", 1}, {"s0.fleet.test.", portOf(t, fleet[0].ep)}}
	})
	r := remote.DNS(name, remote.WithNetResolver(dns.resolver()), remote.WithRefresh(50*time.Millisecond))
	ctx := testkit.Ctx(t, time.Minute)
	pool, err := remote.ConnectAll(ctx, r, fleetOptions()...)
	require.NoError(t, err)
	t.Cleanup(func() { pool.Close() })
	testkit.Eventually(t, "the pool names s0", func() bool { return len(pool.Endpoints()) == 1 })
	assert.Equal(t, "s0.fleet.test.", pool.Endpoints()[0].Attrs["target"])
	assert.NoError(t, pool.Err())
	cl := pool.Clients()[0]
	require.NoError(t, cl.WaitConnected(ctx))

	dns.set(func(s *dnsServer) { s.srvs[name] = []srvRecord{{"gone.fleet.test.", 1}} })
	testkit.Eventually(t, "no target exists: a failed lookup", func() bool { return errors.Is(pool.Err(), remote.ErrResolver) })
	assert.Len(t, pool.Endpoints(), 1, "the last set stays")
}
