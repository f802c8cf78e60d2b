package cborx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
)

// ErrFrameTooLarge is wrapped when a frame's declared length exceeds the
// reader's maximum. The body is not read.
var ErrFrameTooLarge = errors.New("frame exceeds the maximum size")

// FramePrefix is the room an encoder leaves at the start of its buffer so
// that SealFrame can put the length prefix in front of the body without
// copying it.
const FramePrefix = binary.MaxVarintLen64

// SealFrame takes a buffer whose body starts at FramePrefix and returns the
// frame: uvarint(len(body)) immediately followed by the body.
func SealFrame(buf []byte) []byte {
	n := len(buf) - FramePrefix
	var tmp [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(tmp[:], uint64(n))
	start := FramePrefix - k
	copy(buf[start:], tmp[:k])
	return buf[start:]
}

// FrameReader reads length-prefixed frames. The length is checked against the
// maximum before any of the body is read, so a hostile length costs nothing.
//
// It holds only a small buffer of its own (SmallBuffer bytes) while it waits
// for a frame: an idle stream costs little. Small frames are read and
// decoded in it. A frame that does not fit, or a read that filled it (more
// is likely waiting), makes the reader take a buffer of its size from a
// pool shared by every reader; it reads the frames that fit into that one
// in place and gives it back once everything it read has been handed out.
// A frame larger than the size gets a buffer of its own, which the reader
// never reuses: what points into it (a decoded value aliasing the body)
// stays intact after later frames.
type FrameReader struct {
	r          io.Reader
	max        int
	size       int     // frames up to this size are read in place
	small      *[]byte // the reader's own buffer
	buf        *[]byte // small, or a pooled buffer while bytes are buffered
	start, end int     // the buffered bytes: (*buf)[start:end]
	full       bool    // the last read filled buf
	err        error   // the read error to report once the buffered bytes are used
}

// SmallBuffer is the size of the buffer a FrameReader holds while idle.
const SmallBuffer = 512

// NewFrameReader returns a FrameReader reading from r with the given maximum
// body size. Frames up to bufSize bytes (with their length prefix) are read
// in place; larger ones into a buffer of their own.
func NewFrameReader(r io.Reader, max, bufSize int) *FrameReader {
	small := make([]byte, min(SmallBuffer, bufSize))
	return &FrameReader{r: r, max: max, size: bufSize, small: &small, buf: &small}
}

// Grow makes the reader read frames up to bufSize bytes in place from now
// on, if its size is smaller, keeping what it has read ahead. A reader can
// start small (a handshake) and grow once the peer is trusted with more.
func (f *FrameReader) Grow(bufSize int) {
	f.size = max(f.size, bufSize)
}

// Next returns the next frame's body. The body is valid until the next call
// to Next, unless it was larger than the reader's buffer size: then it is
// the caller's to keep. A clean end of stream between frames returns io.EOF;
// an end inside a frame returns io.ErrUnexpectedEOF.
func (f *FrameReader) Next() ([]byte, error) {
	f.release()
	n, k, err := f.length()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrSyntax)
	}
	if n > uint64(f.max) {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, f.max)
	}
	f.start += k
	if int(n)+k > f.size {
		return f.readLarge(int(n))
	}
	if err := f.ensure(int(n)); err != nil {
		return nil, unexpected(err)
	}
	body := (*f.buf)[f.start : f.start+int(n)]
	f.start += int(n)
	return body, nil
}

// release gives the pooled buffer back once everything read into it has
// been handed out (the last body handed out is no longer valid), and goes
// back to the small buffer.
func (f *FrameReader) release() {
	if f.start == f.end {
		if f.buf != f.small {
			putBuffer(f.buf)
		}
		f.buf, f.start, f.end, f.full = f.small, 0, 0, false
	}
}

// buffered returns the bytes read and not yet handed out.
func (f *FrameReader) buffered() []byte { return (*f.buf)[f.start:f.end] }

// length reads the uvarint length prefix, returning it and its size in
// bytes, without consuming it. A clean end of stream before its first byte
// is io.EOF; transport errors are returned as they are.
func (f *FrameReader) length() (uint64, int, error) {
	for {
		p := f.buffered()
		n, k := binary.Uvarint(p)
		switch {
		case k > 0:
			return n, k, nil
		case k < 0 || len(p) >= binary.MaxVarintLen64:
			return 0, 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrSyntax)
		}
		if err := f.ensure(len(p) + 1); err != nil {
			if len(p) > 0 {
				return 0, 0, unexpected(err)
			}
			return 0, 0, err
		}
	}
}

// ensure reads until at least m bytes (m <= f.size) are buffered, in one
// piece.
func (f *FrameReader) ensure(m int) error {
	for f.end-f.start < m {
		if f.err != nil {
			return f.err
		}
		f.makeRoom(m)
		if err := f.fill(); err != nil {
			return err
		}
	}
	return nil
}

// makeRoom makes sure the buffer can hold m bytes from f.start: it moves
// the buffered bytes to a pooled buffer when they need more room than the
// small buffer has (or than a pooled one had before Grow), or when the last
// read filled the small buffer; otherwise it moves them to the front.
func (f *FrameReader) makeRoom(m int) {
	switch {
	case len(*f.buf) < m || (f.buf == f.small && f.full && f.size > len(*f.small)):
		nb := getBuffer(f.size)
		f.end = copy(*nb, f.buffered())
		if f.buf != f.small {
			putBuffer(f.buf)
		}
		f.buf, f.start = nb, 0
	case f.start+m > len(*f.buf):
		f.end = copy(*f.buf, f.buffered())
		f.start = 0
	}
}

// maxEmptyReads is how many reads in a row may return nothing before the
// reader gives up on r (as bufio does).
const maxEmptyReads = 100

// fill reads once into the free end of the pooled buffer. A read error that
// came with bytes is kept for after them.
func (f *FrameReader) fill() error {
	for range maxEmptyReads {
		n, err := f.r.Read((*f.buf)[f.end:])
		f.end += n
		f.full = f.end == len(*f.buf)
		if err != nil {
			f.err = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	f.err = io.ErrNoProgress
	return f.err
}

// readLarge reads the body of a frame of n bytes, larger than the pooled
// buffer, into a buffer of its own, which it returns.
func (f *FrameReader) readLarge(n int) ([]byte, error) {
	// Grow the body as it arrives rather than trusting the length: a peer
	// that declares a large frame and sends little costs little.
	body := make([]byte, 0, min(n, max(2*f.size, len(f.buffered()))))
	k := copy(body[:cap(body)], f.buffered())
	body = body[:k]
	f.start += k
	for len(body) < n {
		if f.err != nil {
			return nil, unexpected(f.err)
		}
		chunk := min(n-len(body), max(len(body), f.size))
		if cap(body)-len(body) < chunk {
			body = append(body, make([]byte, chunk)...)[:len(body)]
		}
		k, err := io.ReadFull(f.r, body[len(body):len(body)+chunk])
		body = body[:len(body)+k]
		if err != nil {
			f.err = err
		}
	}
	return body, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Ready reports whether the next frame is already buffered whole, so that
// Next will return it without waiting for input.
func (f *FrameReader) Ready() bool {
	p := f.buffered()
	n, k := binary.Uvarint(p)
	return k > 0 && n <= uint64(len(p)-k)
}

// SetMax changes the maximum body size for later frames.
func (f *FrameReader) SetMax(max int) { f.max = max }

// bufferPools hold the readers' buffers, one pool per power-of-two size up
// to maxPooled; a reader of another size allocates its buffers.
var bufferPools [maxPooledShift + 1]sync.Pool

const (
	maxPooledShift = 17
	maxPooled      = 1 << maxPooledShift
)

// getBuffer returns a buffer of at least size bytes.
func getBuffer(size int) *[]byte {
	if size < 1 || size > maxPooled {
		b := make([]byte, max(size, 1))
		return &b
	}
	shift := bits.Len(uint(size - 1))
	if p, ok := bufferPools[shift].Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 1<<shift)
	return &b
}

// putBuffer gives a buffer from getBuffer back.
func putBuffer(p *[]byte) {
	size := len(*p)
	if size > maxPooled || size&(size-1) != 0 {
		return
	}
	bufferPools[bits.Len(uint(size-1))].Put(p)
}
