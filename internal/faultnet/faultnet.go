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

	mu        sync.Mutex
	links     map[*link]struct{}
	blackhole bool
	refuse    bool
	delay     time.Duration
	bandwidth int // bytes per second per direction; 0 = unlimited
	closed    bool
	accepted  int
	resets    int // Reset calls so far: a link set up across one is aborted

	wg sync.WaitGroup
}

type link struct {
	a, b  net.Conn
	alive atomic.Int32 // directions still copying
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

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, target, closed, resets := p.refuse, p.target, p.closed, p.resets
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
		if n > 0 {
			p.mu.Lock()
			hole, delay, bw := p.blackhole, p.delay, p.bandwidth
			p.mu.Unlock()
			if !hole {
				wait := delay
				if bw > 0 {
					wait += time.Duration(n) * time.Second / time.Duration(bw)
				}
				if wait > 0 {
					time.Sleep(wait)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					p.drop(l)
					return
				}
			}
		}
		if err != nil {
			// An orderly end in one direction is passed on as a half-close
			// (a black hole swallows it, as a dead route would); the link
			// goes when both directions have ended, or at once on an error.
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) && l.alive.Add(-1) > 0 {
				p.mu.Lock()
				hole := p.blackhole
				p.mu.Unlock()
				if !hole {
					tc.CloseWrite()
				}
				return
			}
			p.drop(l)
			return
		}
	}
}

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
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
}

// Refuse makes the proxy reset new connections as soon as they arrive;
// false restores. Current connections are not touched.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// SetDelay adds d before each chunk of data is forwarded.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// SetBandwidth limits each direction of each link to about bytesPerSecond;
// 0 removes the limit.
func (p *Proxy) SetBandwidth(bytesPerSecond int) {
	p.mu.Lock()
	p.bandwidth = bytesPerSecond
	p.mu.Unlock()
}

// Restore ends every fault: no black hole, no refusal, no delay, no limit.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.blackhole, p.refuse, p.delay, p.bandwidth = false, false, 0, 0
	p.mu.Unlock()
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
