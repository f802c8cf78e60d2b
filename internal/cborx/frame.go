package cborx

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
type FrameReader struct {
	r       io.Reader
	br      *bufio.Reader
	max     int
	buf     []byte
	discard int // bytes of the previous frame still in br's buffer
}

// NewFrameReader returns a FrameReader reading from r with the given maximum
// body size. It buffers bufSize bytes.
func NewFrameReader(r io.Reader, max, bufSize int) *FrameReader {
	return &FrameReader{r: r, br: bufio.NewReaderSize(r, bufSize), max: max}
}

// Grow makes the reader buffer bufSize bytes from now on, if it buffers
// fewer, keeping what it has read ahead. A reader can start small (a
// handshake) and grow once the peer is trusted with more.
func (f *FrameReader) Grow(bufSize int) {
	if bufSize <= f.br.Size() {
		return
	}
	if f.discard > 0 {
		_, _ = f.br.Discard(f.discard) // already buffered: cannot fail
		f.discard = 0
	}
	r := f.r
	if n := f.br.Buffered(); n > 0 {
		ahead, _ := f.br.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(ahead)), r)
	}
	f.br = bufio.NewReaderSize(r, bufSize)
}

// Next returns the next frame's body. The slice is valid until the next call
// to Next. A clean end of stream between frames returns io.EOF; an end inside
// a frame returns io.ErrUnexpectedEOF.
func (f *FrameReader) Next() ([]byte, error) {
	if f.discard > 0 {
		_, _ = f.br.Discard(f.discard) // already buffered: cannot fail
		f.discard = 0
	}
	n, err := f.readLength()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: empty frame", ErrSyntax)
	}
	if n > uint64(f.max) {
		return nil, fmt.Errorf("%w: %d bytes declared, limit %d", ErrFrameTooLarge, n, f.max)
	}
	if int(n) <= f.br.Size() {
		// Small frames are decoded straight from bufio's buffer.
		p, err := f.br.Peek(int(n))
		if err != nil {
			return nil, unexpected(err)
		}
		f.discard = int(n)
		return p, nil
	}
	return f.readLarge(int(n))
}

// readLarge reads the body of a frame of n bytes, too large for bufio's
// buffer, into f.buf.
func (f *FrameReader) readLarge(n int) ([]byte, error) {
	// Grow the buffer as the body arrives rather than trusting the length:
	// a peer that declares a large frame and sends little costs little.
	f.buf = f.buf[:0]
	for len(f.buf) < n {
		chunk := min(n-len(f.buf), max(len(f.buf), f.br.Size()))
		if cap(f.buf)-len(f.buf) < chunk {
			f.buf = append(f.buf, make([]byte, chunk)...)[:len(f.buf)]
		}
		k, err := io.ReadFull(f.br, f.buf[len(f.buf):len(f.buf)+chunk])
		f.buf = f.buf[:len(f.buf)+k]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	body := f.buf
	if cap(f.buf) > 4*f.br.Size() {
		f.buf = nil // do not pin a large buffer between large frames
	}
	return body, nil
}

// readLength reads the uvarint length prefix. A clean end of stream before
// its first byte is io.EOF; transport errors are returned as they are.
func (f *FrameReader) readLength() (uint64, error) {
	var n uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		b, err := f.br.ReadByte()
		if err != nil {
			if i > 0 {
				return 0, unexpected(err)
			}
			return 0, err
		}
		if i == binary.MaxVarintLen64-1 && b > 1 {
			break
		}
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: frame length overflows 64 bits", ErrSyntax)
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
	avail := f.br.Buffered() - f.discard
	if avail <= 0 {
		return false
	}
	p, _ := f.br.Peek(f.discard + min(avail, binary.MaxVarintLen64))
	n, k := binary.Uvarint(p[f.discard:])
	return k > 0 && n <= uint64(avail-k)
}

// SetMax changes the maximum body size for later frames.
func (f *FrameReader) SetMax(max int) { f.max = max }
