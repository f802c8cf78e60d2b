package broker

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// fuzzRoot is what fuzzed calls reach: nothing in it blocks.
type fuzzRoot struct {
	remoteable.Referenceable
}

func (*fuzzRoot) Echo(v any) (any, error)              { return v, nil }
func (*fuzzRoot) Add(a, b int) (int, error)            { return a + b, nil }
func (*fuzzRoot) User(u user) (user, error)            { return u, nil }
func (*fuzzRoot) Plain(p plain) (plain, error)         { return p, nil }
func (*fuzzRoot) Obj() (*counter, error)               { return &counter{}, nil }
func (*fuzzRoot) Ref(r *Ref) (*Ref, error)             { return r, nil }
func (*fuzzRoot) Sleep(ctx context.Context) error      { return nil }
func (*fuzzRoot) Boom() error                          { panic("boom") }
func (*fuzzRoot) Many(xs ...string) ([]string, error)  { return xs, nil }
func (*fuzzRoot) Map(m map[string][]byte) (int, error) { return len(m), nil }
func (*fuzzRoot) Err(e error) (string, error)          { return e.Error(), nil }

var fuzzPair struct {
	sync.Mutex
	srv    *Server
	client *Conn
	server *Conn
}

// fuzzServerConn returns the server side of a live pipe connection, making
// a new one when a fuzzed message killed the last.
func fuzzServerConn(t *testing.T) *Conn {
	fuzzPair.Lock()
	defer fuzzPair.Unlock()
	if fuzzPair.server != nil && fuzzPair.server.Err() == nil && fuzzPair.client.Err() == nil {
		return fuzzPair.server
	}
	if fuzzPair.client != nil {
		fuzzPair.client.Close()
		fuzzPair.srv.Close()
	}
	fuzzPair.srv = NewServer(&fuzzRoot{}, WithLogger(discardLogger()))
	a, b := net.Pipe()
	ch := make(chan *Conn, 1)
	go func() {
		c, err := fuzzPair.srv.ServeConn(context.Background(), a)
		if err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	c, err := NewConn(context.Background(), b, WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	fuzzPair.client, fuzzPair.server = c, <-ch
	return fuzzPair.server
}

// body encodes a message body (no length prefix) the way a real peer would.
func body(fill func(e *encoder) error) []byte {
	e := getEncoder(nil)
	defer putEncoder(e)
	if err := fill(e); err != nil {
		panic(err)
	}
	return append([]byte(nil), e.buf[cborx.FramePrefix:]...)
}

func callBody(id, target uint64, method string, args ...any) []byte {
	return body(func(e *encoder) error {
		e.buf = appendCallHead(e.buf, id, target, method, uint64(time.Second), len(args))
		for _, a := range args {
			if err := e.any(a); err != nil {
				return err
			}
		}
		return nil
	})
}

func seedFrames() [][]byte {
	alice := user{Name: "alice", Tags: []string{"a"}, Joined: time.Unix(1e9, 5).UTC(), Extra: point{X: 1}}
	return [][]byte{
		callBody(1, 0, "Add", 1, 2),
		callBody(2, 0, "Echo", []byte("payload")),
		callBody(3, 0, "Echo", map[string]any{"k": []any{int64(1), "x", 1.5, nil, true}}),
		callBody(4, 0, "User", alice),
		callBody(5, 0, "Many", "a", "b", "c"),
		callBody(6, 0, "Map", map[string][]byte{"x": {1}}),
		callBody(7, 0, "Obj"),
		callBody(8, 0, "Boom"),
		callBody(9, 0, "Err", errNotFound),
		callBody(10, 0, "Plain", plain{I8: 1, M: map[string][]int{"a": {1}}}),
		body(func(e *encoder) error { // a call forwarded for two parties, with an unknown extension
			e.buf = appendCallHeadExt(e.buf, 13, 0, "Add", 0, 2)
			e.buf = cborx.AppendUint(cborx.AppendUint(e.buf, 1), 2)
			e.buf = cborx.AppendMap(e.buf, 2)
			e.buf = cborx.AppendUint(e.buf, 9)
			e.buf = cborx.AppendText(e.buf, "future")
			e.buf = cborx.AppendUint(e.buf, extForwardedFor)
			e.buf = appendForwardedFor(e.buf, actingFor{ids: []remoteable.Identity{{Name: "alice", VerifiedBy: "token"}, {Name: "relay"}}})
			return nil
		}),
		body(func(e *encoder) error { // a call whose caller waits for links
			e.buf = appendCallHeadExt(e.buf, 14, 0, "Add", uint64(time.Second), 2)
			e.buf = cborx.AppendUint(cborx.AppendUint(e.buf, 1), 2)
			e.buf = appendCallExt(e.buf, callExt{waitLink: true})
			return nil
		}),
		body(func(e *encoder) error { // a call with metadata
			e.buf = appendCallHeadExt(e.buf, 15, 0, "Add", 0, 2)
			e.buf = cborx.AppendUint(cborx.AppendUint(e.buf, 1), 2)
			e.buf = appendCallExt(e.buf, callExt{md: Metadata{"request-id": "r-1", "tenant": "acme"}})
			return nil
		}),
		body(func(e *encoder) error { // a reference to one of the server's objects
			e.buf = appendCallHead(e.buf, 11, 0, "Ref", 0, 1)
			e.buf = cborx.AppendTag(e.buf, tagReceiverRef)
			e.buf = cborx.AppendUint(e.buf, 0)
			return nil
		}),
		body(func(e *encoder) error {
			e.buf = appendMsgHead(e.buf, 2, msgCancel)
			e.buf = cborx.AppendUint(e.buf, 12)
			return nil
		}),
		body(func(e *encoder) error {
			e.buf = appendReturnHead(e.buf, 99)
			return e.any([]any{"orphan", int64(1)})
		}),
		body(func(e *encoder) error {
			return encodeFail(e, 98, &validationError{Field: "f", Reason: "r"}, "")
		}),
		body(func(e *encoder) error {
			e.buf = appendRelease(e.buf, 1, 1)
			return nil
		}),
	}
}

// FuzzFrame feeds arbitrary bytes to the frame reader and every frame it
// yields to the server side's message dispatch. Nothing may panic or hang;
// protocol violations are returned as errors.
func FuzzFrame(f *testing.F) {
	for _, b := range seedFrames() {
		var framed []byte
		framed = append(framed, cborx.SealFrame(append(make([]byte, cborx.FramePrefix), b...))...)
		f.Add(framed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := fuzzServerConn(t)
		fr := cborx.NewFrameReader(bytes.NewReader(data), 1<<16, 512)
		for i := 0; i < 8; i++ {
			b, err := fr.Next()
			if err != nil {
				return
			}
			if sc.dispatch(b) != nil { // dispatch lets a panic through
				return
			}
		}
	})
}

// FuzzDecode decodes arbitrary bytes into each kind of destination the value
// codec supports.
func FuzzDecode(f *testing.F) {
	for _, b := range seedFrames() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if cborx.Validate(data, decodeLimits) != nil {
			return
		}
		dests := []any{new(any), new(int), new(string), new([]byte), new(user), new(*user), new(plain),
			new(map[string]any), new([]any), new(error), new(float32), new(withRef),
			new(place), new([]placeV2), new(map[string]*place), new(*validationError), new(job)}
		for _, dst := range dests {
			d := decoder{r: cborx.NewReader(data)}
			_ = d.reply(dst)
		}
	})
}

// FuzzHandshake parses arbitrary hello and welcome messages.
func FuzzHandshake(f *testing.F) {
	f.Add(body(func(e *encoder) error {
		e.buf = appendHello(e.buf, hello{version: protocolVersion, name: "agent", token: "token", maxMessage: 1 << 20})
		return nil
	}))
	f.Add(body(func(e *encoder) error {
		e.buf = appendWelcome(e.buf, welcome{version: protocolVersion, name: "server", id: "5b0f0d0e-0000-4000-8000-000000000000", maxMessage: 1 << 20})
		return nil
	}))
	f.Add(body(func(e *encoder) error {
		return encodeReject(e, ErrAuthFailed)
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseHello(data)
		_, _ = parseWelcome(data)
	})
}

// FuzzReferences plays sequences of reference operations against a live
// connection, three bytes an operation: getting new objects, calling them,
// releasing them (sometimes more than was given), sending them home and
// claiming objects of one's own. The export table must stay within its
// quota and keep the root, and nothing may panic; a violation ends the
// connection, which is then replaced.
func FuzzReferences(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 0, 2, 1, 1})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 3, 1, 0, 3, 2, 0, 2, 1, 2, 2, 2, 1})
	f.Add([]byte{4, 5, 0, 4, 5, 0, 2, 9, 1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		sc := fuzzServerConn(t)
		for i := 0; i+2 < len(data) && i < 3*64; i += 3 {
			op, a, b := data[i]%5, uint64(data[i+1]%8), uint64(data[i+2]%4)+1
			id := uint64(i + 1)
			var msg []byte
			switch op {
			case 0: // a new object: the server exports it
				msg = callBody(id, 0, "Obj")
			case 1: // call whatever object a is
				msg = callBody(id, a, DescribeMethod)
			case 2: // release b references to object a
				msg = body(func(e *encoder) error {
					e.buf = appendRelease(e.buf, a, b)
					return nil
				})
			case 3: // send object a home
				msg = body(func(e *encoder) error {
					e.buf = appendCallHead(e.buf, id, 0, "Ref", 0, 1)
					e.buf = cborx.AppendTag(e.buf, tagReceiverRef)
					e.buf = cborx.AppendUint(e.buf, a)
					return nil
				})
			case 4: // claim an object of our own, id a
				msg = body(func(e *encoder) error {
					e.buf = appendCallHead(e.buf, id, 0, "Echo", 0, 1)
					e.buf = cborx.AppendTag(e.buf, tagSenderRef)
					e.buf = cborx.AppendUint(e.buf, a)
					return nil
				})
			}
			if sc.dispatch(msg) != nil || sc.Err() != nil { // dispatch lets a panic through
				return
			}
			st := sc.Stats()
			if st.Exports < 1 || st.Exports > DefaultMaxExports {
				t.Fatalf("%d exports", st.Exports)
			}
		}
	})
}
