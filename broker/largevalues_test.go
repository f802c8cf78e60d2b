package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
	"unsafe"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// largeSizes are the size classes a large value crosses: copied into the
// frame or scattered (scatterMin), on the main stream or a message stream
// (defaultMsgStreamThreshold), its frame's buffer allocated whole or once a
// quarter arrived (wholeFrameLimit), up to near the default message limit.
var largeSizes = []int{
	1, aliasMin, scatterMin - 1, scatterMin, defaultMsgStreamThreshold - 64, defaultMsgStreamThreshold + 1,
	64 << 10, wholeFrameLimit - 64, wholeFrameLimit + 1, 1 << 20, DefaultMaxMessageSize - 1024,
}

// pattern returns n bytes that differ with seed, so that a value mixed up
// with another, or overwritten, shows.
func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed*13 + i>>8)
	}
	return b
}

// text returns n ASCII letters that differ with seed.
func text(n, seed int) string {
	b := pattern(n, seed)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

// largeService echoes and keeps large values.
type largeService struct {
	remoteable.Referenceable
	mu   sync.Mutex
	kept [][]byte
	text []string
}

func (*largeService) Echo(b []byte) ([]byte, error)        { return b, nil }
func (*largeService) EchoText(s string) (string, error)    { return s, nil }
func (*largeService) EchoAny(v any) (any, error)           { return v, nil }
func (*largeService) Home(r *Ref, b []byte) ([]any, error) { return []any{r, b}, nil }

// Back calls the caller's object back with b and returns its answer.
func (*largeService) Back(ctx context.Context, cb *Ref, b []byte) ([]byte, error) {
	defer cb.Release()
	var out []byte
	err := cb.Call(ctx, "Echo", &out, b)
	return out, err
}

// Keep keeps b and s as they were decoded.
func (s *largeService) Keep(b []byte, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept = append(s.kept, b)
	s.text = append(s.text, text)
	return nil
}

// Kept returns what the i-th Keep kept.
func (s *largeService) Kept(i int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kept[i], nil
}

// largeCallback is the caller's object that Back calls.
type largeCallback struct{ remoteable.Referenceable }

func (*largeCallback) Echo(b []byte) ([]byte, error) { return b, nil }

// TestLargeValuesEverySize sends a value of every size class as an
// argument and a result, as bytes, text and any, through a callback, and
// home with a reference (the main stream, since the message holds one of
// the receiver's objects).
func TestLargeValuesEverySize(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		cl, _ := tr.connect(t, &largeService{}, nil, nil)
		ctx := testkit.Ctx(t, 60*time.Second)
		root := cl.Root()
		cb := &largeCallback{}
		for i, n := range largeSizes {
			want := pattern(n, i)
			var out []byte
			require.NoError(t, root.Call(ctx, "Echo", &out, want), "Echo %d", n)
			require.True(t, bytes.Equal(want, out), "Echo of %d bytes", n)

			s, err := Call[string](ctx, root, "EchoText", text(n, i))
			require.NoError(t, err, "EchoText %d", n)
			require.Equal(t, text(n, i), s, "EchoText of %d bytes", n)

			v, err := Call[any](ctx, root, "EchoAny", want)
			require.NoError(t, err, "EchoAny %d", n)
			require.True(t, bytes.Equal(want, v.([]byte)), "EchoAny of %d bytes", n)

			out = nil
			require.NoError(t, root.Call(ctx, "Back", &out, cb, want), "Back %d", n)
			require.True(t, bytes.Equal(want, out), "callback of %d bytes", n)

			home, err := Call[[]any](ctx, root, "Home", cb, want)
			require.NoError(t, err, "Home %d", n)
			require.Len(t, home, 2)
			assert.Same(t, cb, home[0], "the reference came home with %d bytes", n)
			require.True(t, bytes.Equal(want, home[1].([]byte)), "Home of %d bytes", n)
		}
	})
}

// TestLargeValuesThroughRelay sends values of every size class through a
// relay, which decodes them generically and encodes them again.
func TestLargeValuesThroughRelay(t *testing.T) {
	leakcheck.Check(t)
	_, upAddr := startServer(t, &largeService{})
	up := dial(t, upAddr)
	_, relayAddr := startServer(t, up.Root())
	cl := dial(t, relayAddr)
	ctx := testkit.Ctx(t, 60*time.Second)
	for i, n := range largeSizes {
		want := pattern(n, i)
		var out []byte
		require.NoError(t, cl.Root().Call(ctx, "Echo", &out, want), "Echo %d through the relay", n)
		require.True(t, bytes.Equal(want, out), "Echo of %d bytes through the relay", n)
	}
}

// TestAliasedBytesStayIntact keeps values that were decoded as slices of
// their frames, on both sides, and checks them after further large calls:
// no frame buffer is reused while a value points into it, and a kept
// slice cannot grow into its neighbours.
func TestAliasedBytesStayIntact(t *testing.T) {
	leakcheck.Check(t)
	svc := &largeService{}
	_, addr := startServer(t, svc)
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 60*time.Second)
	root := cl.Root()

	const calls = 20
	sizes := []int{64 << 10, 300 << 10}
	replies := make([][]byte, calls)
	for i := range calls {
		n := sizes[i%len(sizes)]
		want := pattern(n, i)
		require.NoError(t, root.Call(ctx, "Keep", nil, want, text(n, -i)))
		require.NoError(t, root.Call(ctx, "Echo", &replies[i], want))
	}
	for i := range calls {
		n := sizes[i%len(sizes)]
		kept, err := Call[[]byte](ctx, root, "Kept", i)
		require.NoError(t, err)
		require.True(t, bytes.Equal(pattern(n, i), kept), "the server's kept value %d changed", i)
		require.True(t, bytes.Equal(pattern(n, i), replies[i]), "the client's reply %d changed", i)
		assert.Equal(t, len(replies[i]), cap(replies[i]), "an aliased reply's capacity ends at its length")
		svc.mu.Lock()
		require.Equal(t, text(n, -i), svc.text[i], "the server's kept text %d changed", i)
		svc.mu.Unlock()
	}
	// What a handler does with its argument stays in it.
	svc.mu.Lock()
	grown := append(svc.kept[0], 1, 2, 3)
	svc.mu.Unlock()
	require.Len(t, grown, (64<<10)+3)
	require.Equal(t, text(64<<10, 0), svc.text[0], "appending to a kept value left the text beside it alone")
}

// TestDecodeAliasesOwnedBodies checks the rule decoder.alias applies: a
// large byte string of an owned body is a slice of it, capped at its
// length; one of a body that is reused, or a small one, is a copy.
func TestDecodeAliasesOwnedBodies(t *testing.T) {
	big, small := []byte(text(aliasMin, 1)), []byte(text(aliasMin-1, 2))
	for _, tc := range []struct {
		name  string
		value []byte
		owned bool
		alias bool
	}{
		{"owned, large", big, true, true},
		{"owned, small", small, true, false},
		{"reused, large", big, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := cborx.AppendText(cborx.AppendBytes(cborx.AppendArray(nil, 2), tc.value), string(tc.value))
			var owned *ownedBody
			if tc.owned {
				owned = &ownedBody{}
			}
			d := decoder{r: cborx.NewReader(body), owned: owned}
			_, err := d.r.ReadArray()
			require.NoError(t, err)
			var b []byte
			var s string
			require.NoError(t, d.value(reflect.ValueOf(&b).Elem(), infoOf(reflect.TypeFor[[]byte]())))
			require.NoError(t, d.value(reflect.ValueOf(&s).Elem(), infoOf(reflect.TypeFor[string]())))
			require.Equal(t, tc.value, b)
			require.Equal(t, string(tc.value), s)
			inBody := func(p unsafe.Pointer) bool {
				start := uintptr(unsafe.Pointer(unsafe.SliceData(body)))
				return uintptr(p) >= start && uintptr(p) < start+uintptr(len(body))
			}
			assert.Equal(t, tc.alias, inBody(unsafe.Pointer(unsafe.SliceData(b))), "bytes alias the body")
			assert.Equal(t, tc.alias, inBody(unsafe.Pointer(unsafe.StringData(s))), "text aliases the body")
			assert.Equal(t, len(b), cap(b))
			if owned != nil {
				assert.Equal(t, tc.alias, owned.kept, "the body is marked kept when a value aliases it")
			}
		})
	}
}

// TestScatteredFrameMatchesFlat encodes values with and without scatter:
// the frame written piece by piece, the frame flattened and the frame of an
// encoder that copies everything are the same bytes; segments cut off with
// the buffer are forgotten.
func TestScatteredFrameMatchesFlat(t *testing.T) {
	values := []any{pattern(scatterMin, 1), "between", pattern(100, 2), pattern(2*scatterMin, 3), []any{pattern(scatterMin+5, 4)}}
	encode := func(scatter bool) *encoder {
		e := getEncoder(nil)
		e.scatter = scatter
		e.buf = cborx.AppendArray(e.buf, len(values))
		for _, v := range values {
			require.NoError(t, e.any(v))
		}
		return e
	}
	flat := encode(false)
	defer putEncoder(flat)
	want := append([]byte(nil), flat.frame()...)

	sc := encode(true)
	require.Len(t, sc.segs, 3, "each byte string from scatterMin on is a segment")
	require.Equal(t, len(want), sc.bodyLen()+len(want)-flat.bodyLen())
	var written bytes.Buffer
	n, err := sc.writeFrame(&written, nil, 0)
	require.NoError(t, err)
	require.Equal(t, written.Len(), n, "writeFrame counts what it wrote")
	for _, skip := range []int{0, 1, len(want) / 3, len(want) / 2, len(want) - 1, len(want)} {
		require.Equal(t, want[skip:], sc.frameRest(skip), "the frame's rest after %d bytes", skip)
	}
	require.Equal(t, want, written.Bytes(), "written in pieces")
	require.Equal(t, want, sc.frame(), "flattened")
	require.Empty(t, sc.segs)
	putEncoder(sc)

	e := getEncoder(nil)
	defer putEncoder(e)
	e.scatter = true
	e.bytes(pattern(scatterMin, 5))
	mark := len(e.buf)
	e.bytes(pattern(scatterMin, 6))
	e.dropSegments(mark)
	e.buf = e.buf[:mark]
	require.Len(t, e.segs, 1)
	head := len(cborx.AppendHead(nil, cborx.MajorBytes, scatterMin))
	require.Equal(t, head+scatterMin, e.bodyLen(), "only the first segment is counted")
}

// TestScatteredFrameIsOneWrite echoes 64 KiB values, each a segment of
// its frame: the piece before the segment is corked in the coalescer and
// leaves with it, so that each call costs the caller one write(2) over
// TCP, not two, and the bytes arrive whole.
func TestScatteredFrameIsOneWrite(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &largeService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	root := cl.Root()
	var out []byte
	require.NoError(t, root.Call(ctx, "Echo", &out, pattern(64<<10, 99)))
	const calls = 16
	before := cl.Stats().Writes
	for i := range calls {
		out = nil
		require.NoError(t, root.Call(ctx, "Echo", &out, pattern(64<<10, i)))
		require.True(t, bytes.Equal(pattern(64<<10, i), out), "call %d came back whole", i)
	}
	writes := cl.Stats().Writes - before
	// Besides a write per call, the caller sends a window update for every
	// eight results it reads (yamux updates after half the 1 MiB window,
	// streamWindow; with yamux's default of 256 KiB it was every two);
	// with the piece before each segment written on its own it would be 40.
	assert.LessOrEqual(t, writes, int64(calls+calls/8+2), "writes for %d scattered calls", calls)
}

// TestWriteAllCutsLargeWrites: what this side hands yamux in one write,
// and so one yamux frame, is at most maxStreamWrite, however large the
// window (streamWindow).
func TestWriteAllCutsLargeWrites(t *testing.T) {
	for _, n := range []int{0, 1, maxStreamWrite - 1, maxStreamWrite, maxStreamWrite + 1, 4*maxStreamWrite + 7} {
		var w pieceWriter
		p := pattern(n, n)
		require.NoError(t, writeAll(&w, p))
		assert.True(t, bytes.Equal(p, w.all), "%d bytes written whole, in order", n)
		assert.Len(t, w.sizes, (n+maxStreamWrite-1)/maxStreamWrite, "writes for %d bytes", n)
		for _, k := range w.sizes {
			assert.LessOrEqual(t, k, maxStreamWrite, "a write of %d bytes", n)
		}
	}
	require.Greater(t, streamWindow, maxStreamWrite, "the window is what lets a 64 KiB flow run without window stalls")
}

// pieceWriter keeps what is written to it and the size of each write.
type pieceWriter struct {
	all   []byte
	sizes []int
}

func (w *pieceWriter) Write(p []byte) (int, error) {
	w.all = append(w.all, p...)
	w.sizes = append(w.sizes, len(p))
	return len(p), nil
}

// TestLargeCallsConcurrently has callers share the message streams with
// values of different sizes: each gets its own back.
func TestLargeCallsConcurrently(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &largeService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				want := pattern(largeSizes[3+(w+i)%7], w*100+i)
				var out []byte
				if err := cl.Root().Call(ctx, "Echo", &out, want); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(want, out) {
					errs <- fmt.Errorf("caller %d call %d: %d bytes came back different", w, i, len(want))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// yamuxPair returns the two ends of a yamux stream over loopback TCP.
func yamuxPair(t *testing.T) (w, r *yamux.Stream) {
	ln := listen(t)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	sc, ok := <-accepted
	require.True(t, ok, "accept failed")
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	cs, err := yamux.Client(nc, cfg)
	require.NoError(t, err)
	ss, err := yamux.Server(sc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { cs.Close(); ss.Close() })
	w, err = cs.OpenStream()
	require.NoError(t, err)
	r, err = ss.AcceptStream()
	require.NoError(t, err)
	return w, r
}

// frameOf returns body with its length prefix.
func frameOf(body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(body))), body...)
}

// TestMsgReaderFrames reads frames of every size class written back to
// back in one write, small ones sharing what the reader reads ahead, then
// a clean end.
func TestMsgReaderFrames(t *testing.T) {
	leakcheck.Check(t)
	w, r := yamuxPair(t)
	sizes := []int{1, 3, msgHeadSize - 2, msgHeadSize, msgHeadSize + 1, 64 << 10, wholeFrameLimit, wholeFrameLimit + 1, 1 << 20, 2}
	var all []byte
	for i, n := range sizes {
		all = append(all, frameOf(pattern(n, i))...)
	}
	go func() {
		_, _ = w.Write(all)
		_ = w.Close()
	}()
	fr := newMsgReader(r, 1<<20)
	for i, n := range sizes {
		body, err := fr.next()
		require.NoError(t, err, "frame %d", i)
		require.True(t, bytes.Equal(pattern(n, i), body), "frame %d of %d bytes", i, n)
	}
	_, err := fr.next()
	require.ErrorIs(t, err, io.EOF)
}

// TestMsgReaderReusesLargeBuffers reads large frames of sizes that share
// pooled buffers (bigFrames), giving each buffer back as a frame nobody
// kept: every frame reads whole and unchanged, none shows a byte of the
// frame before it, and buffers are in fact reused.
func TestMsgReaderReusesLargeBuffers(t *testing.T) {
	leakcheck.Check(t)
	w, r := yamuxPair(t)
	sizes := []int{1 << 20, 600 << 10, 1<<20 + 100, 1 << 20, wholeFrameLimit + 1, 3 << 20}
	const rounds = 6
	go func() {
		for i := range rounds * len(sizes) {
			if _, err := w.Write(frameOf(pattern(sizes[i%len(sizes)], i))); err != nil {
				return
			}
		}
		_ = w.Close()
	}()
	fr := newMsgReader(r, 4<<20)
	seen := map[*byte]bool{}
	reused := 0
	for i := range rounds * len(sizes) {
		n := sizes[i%len(sizes)]
		body, err := fr.next()
		require.NoError(t, err, "frame %d", i)
		require.Len(t, body, n)
		require.True(t, bytes.Equal(pattern(n, i), body), "frame %d of %d bytes", i, n)
		if p := unsafe.SliceData(body); seen[p] {
			reused++
		} else {
			seen[p] = true
		}
		fr.reuse(body)
	}
	assert.Positive(t, reused, "large frames' buffers are reused")
}

// TestMsgReaderRefuses checks the errors of frames the reader refuses: a
// declared length over the limit (before any body is sent), an empty
// frame, a length that overflows, and streams that end inside a frame.
func TestMsgReaderRefuses(t *testing.T) {
	leakcheck.Check(t)
	for _, tc := range []struct {
		name  string
		bytes []byte
		close bool
		want  error
	}{
		{"too large, body never sent", binary.AppendUvarint(nil, 1<<20+1), false, cborx.ErrFrameTooLarge},
		{"empty", []byte{0}, false, cborx.ErrSyntax},
		{"length overflows", bytes.Repeat([]byte{0xff}, 11), false, cborx.ErrSyntax},
		{"ends inside the length", []byte{0x80}, true, io.ErrUnexpectedEOF},
		{"ends inside the body", frameOf(pattern(1000, 1))[:500], true, io.ErrUnexpectedEOF},
		{"ends inside a large body", frameOf(pattern(wholeFrameLimit*2, 1))[:wholeFrameLimit], true, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, r := yamuxPair(t)
			go func() {
				_, _ = w.Write(tc.bytes)
				if tc.close {
					_ = w.Close()
				}
			}()
			_, err := newMsgReader(r, 1<<20).next()
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// FuzzMsgReader reads the same bytes with msgReader and with the main
// stream's cborx.FrameReader, the latter in chunks of one byte and the
// former as they come: both must return the same frames, and fail (or end)
// at the same frame.
func FuzzMsgReader(f *testing.F) {
	f.Add(append(frameOf([]byte{0x82, 1, 2}), frameOf(pattern(300, 1))...), 1000)
	f.Add(append(frameOf(pattern(70, 2)), 0x80), 100)
	f.Add([]byte{0}, 10)
	f.Add(bytes.Repeat([]byte{0xff}, 12), 10)
	f.Fuzz(func(t *testing.T, in []byte, limit int) {
		limit = 1 + abs(limit)%4096
		mr := newMsgReader(bytes.NewReader(in), limit)
		fr := cborx.NewFrameReader(iotest.OneByteReader(bytes.NewReader(in)), limit, 64)
		for {
			got, gerr := mr.next()
			want, werr := fr.Next()
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("msgReader: %v; FrameReader: %v", gerr, werr)
			}
			if werr != nil {
				for _, sentinel := range []error{io.EOF, io.ErrUnexpectedEOF, cborx.ErrFrameTooLarge, cborx.ErrSyntax} {
					if errors.Is(werr, sentinel) != errors.Is(gerr, sentinel) {
						t.Fatalf("msgReader: %v; FrameReader: %v", gerr, werr)
					}
				}
				return
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("msgReader read %x, FrameReader %x", got, want)
			}
			mr.reuse(got)
		}
	})
}

// abs returns the magnitude of n; for the minimum int, which has none in
// an int, it returns n, whose remainder by a power of two is 0.
func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// TestShrinkStreamsWhileLargeCallsRun lets go of the streams' receive
// buffers on both sides, over and over, while callers echo 64 KiB values
// on them: every value comes back whole (a stream in use takes a new
// buffer with its next yamux frame).
func TestShrinkStreamsWhileLargeCallsRun(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, &largeService{})
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 60*time.Second)
	var sc *Conn
	require.Eventually(t, func() bool {
		if conns := srv.Conns(); len(conns) == 1 {
			sc = conns[0]
		}
		return sc != nil
	}, 10*time.Second, time.Millisecond)
	stop := make(chan struct{})
	shrunk := make(chan struct{})
	go func() {
		defer close(shrunk)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cl.shrinkStreams()
			sc.shrinkStreams()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []byte // reused: results are read into it (returnDirect)
			for i := range 40 {
				want := pattern(64<<10, w*1000+i)
				if err := cl.Root().Call(ctx, "Echo", &out, want); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(want, out) {
					errs <- fmt.Errorf("caller %d call %d came back different", w, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-shrunk
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestKeepaliveTidiesWhenItFires: the keepalive's timer runs tidy (the
// connection's shrinkStreams) each time it fires on a live link.
func TestKeepaliveTidiesWhenItFires(t *testing.T) {
	var tidied atomic.Int32
	co := &coalescer{}
	co.lastRead.Store(monoNow())
	k := newKeepalive(co, nil, minDeadPeerTimeout, true, func(error) { t.Error("a live peer found dead") }, func() { tidied.Add(1) })
	// The keepalive's clock reads the moment of the last read: the peer
	// was just heard from at every firing, so it is neither found dead nor
	// pinged (there is no session here), however late the timer runs.
	// (Kept fresh by the polling below instead, a loaded machine left it
	// 100 ms stale: a ping on the nil session, a panic.)
	k.now = co.lastRead.Load
	k.start()
	defer k.stop()
	require.Eventually(t, func() bool { return tidied.Load() > 1 }, 10*time.Second, time.Millisecond)
}
