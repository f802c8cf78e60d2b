package broker

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// rawPeer speaks the wire by hand, to send what a real client never would.
type rawPeer struct {
	t    *testing.T
	sess *yamux.Session
	st   *yamux.Stream
	fr   *cborx.FrameReader
}

func rawConnect(t *testing.T, addr string, sendHello bool) *rawPeer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = nil
	cfg.Logger = yamuxLogger{discardLogger()}
	sess, err := yamux.Client(nc, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { sess.Close() })
	st, err := sess.OpenStream()
	require.NoError(t, err)
	st.SetDeadline(time.Now().Add(10 * time.Second))
	p := &rawPeer{t: t, sess: sess, st: st, fr: cborx.NewFrameReader(st, 1<<22, 4096)}
	if sendHello {
		p.sendMsg(func(e *encoder) {
			e.buf = appendHello(e.buf, hello{version: protocolVersion, name: "raw", token: "", maxMessage: 1 << 22})
		})
		body, err := p.fr.Next()
		require.NoError(t, err)
		r := cborx.NewReader(body)
		r.ReadArray()
		typ, _ := r.ReadUint()
		require.Equal(t, uint64(msgWelcome), typ)
	}
	return p
}

// write sends bytes. Its error is ignored: when the server closes right
// after reading them, yamux may report a write that arrived as failed.
func (p *rawPeer) write(b []byte) {
	_, _ = p.st.Write(b)
}

// sendMsg encodes one message body with fill and sends it as a frame.
func (p *rawPeer) sendMsg(fill func(e *encoder)) {
	e := getEncoder(nil)
	defer putEncoder(e)
	fill(e)
	p.write(e.frame())
}

func (p *rawPeer) call(id, target uint64, method string, args ...any) {
	p.sendMsg(func(e *encoder) {
		e.buf = appendCallHead(e.buf, id, target, method, 0, len(args))
		for _, a := range args {
			require.NoError(p.t, e.any(a))
		}
	})
}

// next reads the next message: its type, and the error it carries if it is
// a Fail, Reject or Goodbye.
func (p *rawPeer) next() (uint64, error, error) {
	body, err := p.fr.Next()
	if err != nil {
		return 0, nil, err
	}
	r := cborx.NewReader(body)
	r.ReadArray()
	typ, _ := r.ReadUint()
	switch msgKind(typ) {
	case msgFail:
		r.ReadUint()
	case msgGoodbye, msgReject:
	default:
		return typ, nil, nil
	}
	d := decoder{r: r}
	re, err := d.wireError()
	require.NoError(p.t, err)
	return typ, re, nil
}

// closedWith reads until the server says goodbye and closes.
func (p *rawPeer) closedWith() error {
	var bye error
	for {
		typ, carried, err := p.next()
		if err != nil {
			return bye
		}
		if typ == uint64(msgGoodbye) {
			bye = carried
		}
	}
}

func TestBadInputGetsClearErrorAndServerServesOthers(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc, WithMaxMessageSize(64<<10), WithHandshakeTimeout(500*time.Millisecond))
	bystander := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	cases := []struct {
		name string
		send func(p *rawPeer)
		// Either the call fails with wantFail and the connection stays up,
		// or the server says goodbye with wantBye and closes it.
		wantFail error
		wantBye  string
	}{
		{name: "wrong argument types", send: func(p *rawPeer) { p.call(1, 0, "Add", "one", "two") }, wantFail: ErrBadArguments},
		{name: "wrong argument count", send: func(p *rawPeer) { p.call(1, 0, "Add", 1) }, wantFail: ErrBadArguments},
		{name: "unknown method", send: func(p *rawPeer) { p.call(1, 0, "Launch") }, wantFail: ErrUnknownMethod},
		{name: "forged reference id", send: func(p *rawPeer) { p.call(1, 77, "Inc") }, wantFail: ErrUnknownReference},
		{name: "forged home-coming reference", send: func(p *rawPeer) {
			p.call(1, 0, "Keep", &Ref{c: nil, obj: nil}) // replaced below
		}, wantFail: ErrBadArguments},
		{name: "truncated frame", send: func(p *rawPeer) {
			p.write([]byte{100, 0x83, 0x01})
			p.st.Close() // the stream ends inside the frame
		}, wantBye: "unexpected EOF"},
		{name: "oversized frame", send: func(p *rawPeer) {
			p.write([]byte{0x80, 0x80, 0x80, 0x01}) // 2 MiB declared, 64 KiB allowed
		}, wantBye: "frame exceeds the maximum size"},
		{name: "garbage after handshake", send: func(p *rawPeer) {
			p.write([]byte{5, 0xff, 0xfe, 0xfd, 0xfc, 0xfb})
		}, wantBye: "malformed CBOR"},
		{name: "not an array", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) { e.buf = cborx.AppendText(e.buf, "hello") })
		}, wantBye: "must be an array"},
		{name: "unknown message type", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = cborx.AppendUint(cborx.AppendArray(e.buf, 2), 99)
				e.buf = cborx.AppendUint(e.buf, 1)
			})
		}, wantBye: "unexpected message type 99"},
		{name: "second hello", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = appendMsgHead(e.buf, 2, msgHello)
				e.buf = cborx.AppendUint(e.buf, 1)
			})
		}, wantBye: "unexpected message type 0"},
		{name: "release of an id never given", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = appendRelease(e.buf, 12345, 1)
			})
		}, wantBye: "never handed out"},
		{name: "nesting too deep", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
				for i := 0; i < 100; i++ {
					e.buf = cborx.AppendArray(e.buf, 1)
				}
				e.buf = cborx.AppendNull(e.buf)
			})
		}, wantBye: "limit exceeded"},
		{name: "duplicate map keys", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
				e.buf = cborx.AppendMap(e.buf, 2)
				e.buf = cborx.AppendText(cborx.AppendText(e.buf, "k"), "a")
				e.buf = cborx.AppendText(cborx.AppendText(e.buf, "k"), "b")
			})
		}, wantFail: ErrBadArguments},
		{name: "array over the item limit", send: func(p *rawPeer) {
			p.sendMsg(func(e *encoder) {
				e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
				e.buf = cborx.AppendArray(e.buf, 200000)
			})
		}, wantBye: "limit exceeded"},
		{name: "too many message streams", send: func(p *rawPeer) {
			for i := 0; i < maxPeerMsgStreams+1; i++ {
				if _, err := p.sess.OpenStream(); err != nil {
					return
				}
			}
		}, wantBye: "more than 16 message streams"},
		{name: "indefinite length", send: func(p *rawPeer) {
			p.write([]byte{3, 0x9f, 0x01, 0xff})
		}, wantBye: "indefinite-length"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := rawConnect(t, addr, true)
			if c.name == "forged home-coming reference" {
				p.sendMsg(func(e *encoder) {
					e.buf = appendCallHead(e.buf, 1, 0, "Keep", 0, 1)
					e.buf = cborx.AppendTag(e.buf, tagReceiverRef)
					e.buf = cborx.AppendUint(e.buf, 31337)
				})
			} else {
				c.send(p)
			}
			if c.wantFail != nil {
				typ, carried, err := p.next()
				require.NoError(t, err)
				require.Equal(t, uint64(msgFail), typ)
				assert.ErrorIs(t, carried, c.wantFail)
				// The connection is still good.
				p.call(2, 0, "Add", 1, 2)
				typ, _, err = p.next()
				require.NoError(t, err)
				assert.Equal(t, uint64(msgReturn), typ)
			} else {
				bye := p.closedWith()
				require.Error(t, bye, "the server says why it closes")
				assert.ErrorIs(t, bye, ErrProtocol)
				assert.Contains(t, bye.Error(), c.wantBye)
			}
			// Everyone else is still served.
			n, err := Call[int](ctx, bystander.Root(), "Add", 40, 2)
			require.NoError(t, err)
			assert.Equal(t, 42, n)
			fresh := dial(t, addr)
			require.NoError(t, fresh.Root().Call(ctx, "Nothing", nil))
		})
	}
	assert.Nil(t, bystander.Err())
	_ = srv
}

func TestHandshakeRefusals(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithToken("t0ken"))
	bystander := dial(t, addr, WithToken("t0ken"))

	// Version mismatch.
	p := rawConnect(t, addr, false)
	p.sendMsg(func(e *encoder) {
		e.buf = appendHello(e.buf, hello{version: 99, name: "future", token: "t0ken", maxMessage: 1 << 20})
	})
	typ, carried, err := p.next()
	require.NoError(t, err)
	assert.Equal(t, uint64(msgReject), typ)
	assert.ErrorIs(t, carried, ErrVersionMismatch)

	// Garbage instead of a hello.
	p = rawConnect(t, addr, false)
	p.write([]byte{2, 0xa0, 0x00})
	typ, carried, err = p.next()
	if err == nil { // the server may answer before closing, or just close
		assert.Equal(t, uint64(msgReject), typ)
		assert.ErrorIs(t, carried, ErrProtocol)
	}

	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithToken("wrong"))
	assert.ErrorIs(t, err, ErrAuthFailed)
	require.NoError(t, bystander.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
}

func TestPeerThatStopsReadingIsDisconnected(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	srv, addr := startServer(t, svc, WithWriteTimeout(300*time.Millisecond))
	bystander := dial(t, addr)
	p := rawConnect(t, addr, true)
	sc := func() *Conn {
		for _, c := range srv.Conns() {
			if c.Peer().Name == "raw" {
				return c
			}
		}
		return nil
	}
	testkit.Eventually(t, "raw peer connected", func() bool { return sc() != nil })
	victim := sc()
	// Ask for results it never reads, until the windows are full.
	payload := make([]byte, 16<<10)
	for i := uint64(1); i <= 40; i++ {
		p.call(i, 0, "Echo", payload)
	}
	select {
	case <-victim.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the server kept a peer that stopped reading")
	}
	assert.ErrorIs(t, victim.Err(), ErrWriteTimeout)
	require.NoError(t, bystander.Root().Call(testkit.Ctx(t, 30*time.Second), "Nothing", nil))
}

var _ = errors.New

// TestCancelThatOvertakesItsCall sends a Cancel on the main stream before the
// call it cancels arrives on a message stream: the call must not run. A
// Cancel without the flag, for a call that has not come, must not stick.
func TestCancelThatOvertakesItsCall(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	_, addr := startServer(t, svc)
	p := rawConnect(t, addr, true)
	msgStream, err := p.sess.OpenStream()
	require.NoError(t, err)
	sendOn := func(w interface{ Write([]byte) (int, error) }, fill func(e *encoder)) {
		e := getEncoder(nil)
		defer putEncoder(e)
		fill(e)
		_, _ = w.Write(e.frame())
	}
	cancel := func(id uint64, mayPrecede bool) func(e *encoder) {
		return func(e *encoder) {
			e.buf = appendCancel(e.buf, id, mayPrecede)
		}
	}
	call := func(id uint64, method string) func(e *encoder) {
		return func(e *encoder) {
			e.buf = appendCallHead(e.buf, id, 0, method, 0, 0)
		}
	}
	sendOn(p.st, cancel(1, true))
	sendOn(p.st, call(2, "Nothing")) // a later call arrives first, on the main stream
	typ, _, err := p.next()
	require.NoError(t, err)
	require.Equal(t, uint64(msgReturn), typ)
	sendOn(msgStream, call(1, "Wait"))    // the cancelled call, late
	sendOn(msgStream, call(3, "Nothing")) // processed after call 1 on the same stream
	typ, _, err = p.next()
	require.NoError(t, err)
	require.Equal(t, uint64(msgReturn), typ)
	select {
	case name := <-svc.started:
		t.Fatalf("%s ran although it was cancelled before it arrived", name)
	default:
	}

	// Without the flag a cancel for an unknown call is dropped at once.
	sendOn(p.st, cancel(4, false))
	sendOn(p.st, call(4, "Nothing"))
	typ, _, err = p.next()
	require.NoError(t, err)
	assert.Equal(t, uint64(msgReturn), typ, "the call ran: the stray cancel did not stick")
}
