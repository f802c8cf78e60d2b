package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections from its own address to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	links    map[*link]struct{}
	faults   faults
	closed   bool
	accepted int
	resets   int  // Reset calls so far: a link set up across one is aborted
	lossy    bool // links that lost bytes to a black hole carry on: see Lossy

	wg sync.WaitGroup
}

// faults are the faults the proxy applies now; the zero value is normal
// service.
type faults struct {
	blackhole bool
	refuse    bool
	delay     time.Duration
	bandwidth int // bytes per second per direction; 0 = unlimited
}

type link struct {
	a, b  net.Conn
	alive atomic.Int32 // directions still copying
	holed atomic.Bool  // a black hole dropped bytes of it: see Blackhole
}

// New starts a proxy on a loopback port forwarding to target.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget changes where new connections are forwarded.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// Accepted reports how many connections the proxy has accepted.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// accept takes connections until the listener closes, refusing them or
// linking each to the target.
func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, target, closed, resets := p.faults.refuse, p.target, p.closed, p.resets
		p.mu.Unlock()
		if refuse || closed {
			abort(c)
			continue
		}
		p.wg.Add(1)
		go p.connect(c, target, resets)
	}
}

// connect dials target for a, accepted when Reset had been called resets
// times. A Reset while it dialled aborts it too, as it would have had the
// link been set up a moment sooner: "every current connection" includes
// one still being set up.
func (p *Proxy) connect(a net.Conn, target string, resets int) {
	defer p.wg.Done()
	b, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		abort(a)
		return
	}
	l := &link{a: a, b: b}
	p.mu.Lock()
	if p.closed || p.resets != resets {
		p.mu.Unlock()
		abort(a)
		abort(b)
		return
	}
	p.links[l] = struct{}{}
	l.alive.Store(2)
	p.wg.Add(2)
	p.mu.Unlock()
	go p.pipe(l, a, b)
	go p.pipe(l, b, a)
}

// pipe copies src to dst, applying the proxy's faults chunk by chunk.
func (p *Proxy) pipe(l *link, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.forward(l, dst, buf[:n]) {
			p.drop(l)
			return
		}
		if err != nil {
			p.readEnded(l, dst, err)
			return
		}
	}
}

// forward passes one chunk on to dst as the current faults allow, and
// reports false if dst failed.
func (p *Proxy) forward(l *link, dst net.Conn, chunk []byte) bool {
	f, lossy := p.current(), p.isLossy()
	if f.blackhole {
		l.holed.Store(true)
		return true
	}
	if l.holed.Load() && !lossy {
		// Lost bytes the lift did not catch (dropped as it happened):
		// the link cannot go on with a gap.
		abort(l.a)
		abort(l.b)
		return false
	}
	wait := f.delay
	if f.bandwidth > 0 {
		wait += time.Duration(len(chunk)) * time.Second / time.Duration(f.bandwidth)
	}
	if wait > 0 {
		time.Sleep(wait)
	}
	_, err := dst.Write(chunk)
	return err == nil
}

// readEnded handles the end of one direction of l, whose read failed
// with err.
func (p *Proxy) readEnded(l *link, dst net.Conn, err error) {
	// An orderly end in one direction is passed on as a half-close
	// (a black hole swallows it, as a dead route would); the link
	// goes when both directions have ended, or at once on an error.
	if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) && l.alive.Add(-1) > 0 {
		if !p.current().blackhole {
			tc.CloseWrite()
		}
		return
	}
	p.drop(l)
}

// drop closes both ends of l, once.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	_, ok := p.links[l]
	delete(p.links, l)
	p.mu.Unlock()
	if ok {
		l.a.Close()
		l.b.Close()
	}
}

// abort closes c with a TCP reset rather than an orderly close.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// Reset aborts every current connection with a TCP reset, both ways.
func (p *Proxy) Reset() {
	p.mu.Lock()
	links := p.links
	p.links = map[*link]struct{}{}
	p.resets++
	p.mu.Unlock()
	for l := range links {
		abort(l.a)
		abort(l.b)
	}
}

// Blackhole makes current and new connections drop every byte while their
// sockets stay open, like a pulled cable or a dead route; false restores.
//
// A TCP stream never skips bytes: after a real black hole either the
// retransmissions deliver everything or the connection ends. So when the
// black hole lifts, every link that lost bytes to it is aborted (a reset
// both ways), unless Lossy is on: a link that went on would deliver its
// streams with gaps, which no TCP peer ever sees (and a protocol over TCP
// need not survive: a lost window update or reply would stall it forever).
func (p *Proxy) Blackhole(on bool) { p.change(func(f *faults) { f.blackhole = on }) }

// Lossy(true) lets links that lost bytes to a black hole carry on once it
// lifts, with gaps in their streams, for tests of what notices lost bytes;
// Restore leaves it as it is.
func (p *Proxy) Lossy(on bool) {
	p.mu.Lock()
	p.lossy = on
	p.mu.Unlock()
}

func (p *Proxy) isLossy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lossy
}

// Refuse makes the proxy reset new connections as soon as they arrive;
// false restores. Current connections are not touched.
func (p *Proxy) Refuse(on bool) { p.change(func(f *faults) { f.refuse = on }) }

// SetDelay adds d before each chunk of data is forwarded.
func (p *Proxy) SetDelay(d time.Duration) { p.change(func(f *faults) { f.delay = d }) }

// SetBandwidth limits each direction of each link to about bytesPerSecond;
// 0 removes the limit.
func (p *Proxy) SetBandwidth(bytesPerSecond int) {
	p.change(func(f *faults) { f.bandwidth = bytesPerSecond })
}

// Restore ends every fault: no black hole, no refusal, no delay, no limit.
func (p *Proxy) Restore() { p.change(func(f *faults) { *f = faults{} }) }

// change applies one change to the faults under the proxy's lock: every
// setter above goes through it.
func (p *Proxy) change(apply func(*faults)) {
	p.mu.Lock()
	apply(&p.faults)
	var holed []*link
	if !p.faults.blackhole && !p.lossy {
		for l := range p.links {
			if l.holed.Load() {
				holed = append(holed, l)
				delete(p.links, l)
			}
		}
	}
	p.mu.Unlock()
	for _, l := range holed {
		abort(l.a)
		abort(l.b)
	}
}

// current returns the faults in force now.
func (p *Proxy) current() faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}
