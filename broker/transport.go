package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

// yamuxConfig derives yamux's settings from the options: keepalives every
// half of the dead-peer timeout, each answered within the other half, and
// yamux's logging routed into the connection's slog.Logger.
func yamuxConfig(o *options) *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{o.logger}
	cfg.EnableKeepAlive = true
	cfg.KeepAliveInterval = o.deadPeerTimeout / 2
	cfg.ConnectionWriteTimeout = o.deadPeerTimeout / 2
	cfg.StreamOpenTimeout = 0 // no goroutine per opened stream; keepalives catch a dead peer
	// Streams not yet accepted are buffered by yamux, a window each: before
	// the handshake nobody accepts them. A peer needs the main stream and
	// maxPeerBulkStreams more.
	cfg.AcceptBacklog = maxPeerBulkStreams + 2
	cfg.StreamCloseTimeout = 30 * time.Second
	return cfg
}

// yamuxLogger adapts slog to yamux's Printf-style logger, keeping the level
// yamux writes into its messages.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any)                 { y.log(fmt.Sprint(v...)) }
func (y yamuxLogger) Printf(format string, v ...any) { y.log(fmt.Sprintf(format, v...)) }
func (y yamuxLogger) Println(v ...any)               { y.log(fmt.Sprintln(v...)) }

func (y yamuxLogger) log(msg string) {
	level := slog.LevelDebug
	switch {
	case strings.HasPrefix(msg, "[ERR]"):
		level = slog.LevelWarn
	case strings.HasPrefix(msg, "[WARN]"):
		level = slog.LevelInfo
	}
	if !y.l.Enabled(context.Background(), level) {
		return
	}
	y.l.Log(context.Background(), level, strings.TrimSpace(msg), "component", "yamux")
}

// coalescer joins each yamux data frame's 12-byte header and its body into
// one write. yamux writes them separately; on loopback and LAN links the two
// write(2) calls cost as much as the rest of a small call. Only yamux's send
// loop writes to the connection, always a header and then, for a data frame
// with a length, exactly its body, so holding the header back until the body
// arrives is safe.
type coalescer struct {
	net.Conn
	hdr  [12]byte
	held bool
	buf  []byte
	arr  [2][]byte
	tcp  bool

	writes, written atomic.Int64 // write calls and bytes to the connection
	reads, read     atomic.Int64 // read calls and bytes from it
}

func (c *coalescer) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.reads.Add(1)
	c.read.Add(int64(n))
	return n, err
}

const (
	yamuxTypeData   = 0
	writevThreshold = 16 << 10
)

func newCoalescer(nc net.Conn) *coalescer {
	_, tcp := nc.(*net.TCPConn)
	return &coalescer{Conn: nc, tcp: tcp}
}

func (c *coalescer) Write(p []byte) (int, error) {
	if c.held {
		c.held = false
		var err error
		c.writes.Add(1)
		c.written.Add(int64(len(p) + len(c.hdr)))
		if len(p) > writevThreshold && c.tcp {
			c.arr = [2][]byte{c.hdr[:], p}
			bufs := net.Buffers(c.arr[:])
			_, err = bufs.WriteTo(c.Conn) // one writev
			c.arr = [2][]byte{}
		} else {
			c.buf = append(append(c.buf[:0], c.hdr[:]...), p...)
			_, err = c.Conn.Write(c.buf)
			if cap(c.buf) > 4*writevThreshold {
				c.buf = nil
			}
		}
		if err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(p) == len(c.hdr) && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0 {
		copy(c.hdr[:], p)
		c.held = true
		return len(p), nil
	}
	c.writes.Add(1)
	c.written.Add(int64(len(p)))
	return c.Conn.Write(p)
}
