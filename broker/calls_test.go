package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

func TestCancelReachesHandler(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		svc := newService()
		cl, _ := tr.connect(t, svc, nil, nil)
		ctx, cancel := context.WithCancel(testkit.Ctx(t, 30*time.Second))
		returned := make(chan error, 1)
		go func() { returned <- cl.Root().Call(ctx, "Wait", nil) }()
		require.Equal(t, "Wait", <-svc.started)

		cancelled := time.Now()
		cancel()
		err := <-returned
		assert.ErrorIs(t, err, context.Canceled, "the caller returns ctx.Err() at once")
		sawDone := <-svc.sawDone
		// The bound: the handler sees ctx.Done() within 100 ms. On
		// loopback the cancel message takes well under a millisecond.
		assert.Less(t, sawDone.Sub(cancelled), 100*time.Millisecond)
	})
}

func TestDeadlineTravels(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	_, addr := startServer(t, svc)
	cl := dial(t, addr)
	ctx, cancel := context.WithTimeout(testkit.Ctx(t, 30*time.Second), 5*time.Second)
	defer cancel()
	left, err := Call[time.Duration](ctx, cl.Root(), "Deadline")
	require.NoError(t, err)
	assert.Greater(t, left, time.Duration(0))
	assert.LessOrEqual(t, left, 5*time.Second)

	noDeadline := context.Background()
	_, err = Call[time.Duration](noDeadline, cl.Root(), "Deadline")
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "no deadline", re.Message)

	// The handler's context expires with the caller's deadline.
	short, cancel2 := context.WithTimeout(testkit.Ctx(t, 30*time.Second), 50*time.Millisecond)
	defer cancel2()
	err = cl.Root().Call(short, "Wait", nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	<-svc.started
	<-svc.sawDone

	expired, cancel3 := context.WithDeadline(testkit.Ctx(t, 30*time.Second), time.Now().Add(-time.Second))
	defer cancel3()
	assert.ErrorIs(t, cl.Root().Call(expired, "Add", nil, 1, 2), context.DeadlineExceeded)
}

func TestSlowHandlerDoesNotDelayOthers(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		svc := newService()
		cl, _ := tr.connect(t, svc, nil, nil)
		ctx := testkit.Ctx(t, 30*time.Second)
		blocked := make(chan error, 1)
		go func() {
			_, err := Call[string](ctx, cl.Root(), "Block")
			blocked <- err
		}()
		require.Equal(t, "Block", <-svc.started)
		for i := 0; i < 50; i++ {
			n, err := Call[int](ctx, cl.Root(), "Add", i, 1)
			require.NoError(t, err)
			assert.Equal(t, i+1, n)
		}
		select {
		case err := <-blocked:
			t.Fatalf("the slow call returned early: %v", err)
		default:
		}
		close(svc.release)
		require.NoError(t, <-blocked)
	})
}

func TestConcurrentCallQuota(t *testing.T) {
	leakcheck.Check(t)
	svc := newService()
	_, addr := startServer(t, svc, WithMaxConcurrentCalls(2))
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Call[string](ctx, cl.Root(), "Block")
			assert.NoError(t, err)
		}()
		<-svc.started
	}
	err := cl.Root().Call(ctx, "Add", nil, 1, 2)
	assert.ErrorIs(t, err, ErrTooManyCalls)
	close(svc.release)
	wg.Wait()
	n, err := Call[int](ctx, cl.Root(), "Add", 1, 2)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
}

func TestTracebacksOnlyWhenServerOptsIn(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithTracebacks(true))
	cl := dial(t, addr)
	err := cl.Root().Call(testkit.Ctx(t, 30*time.Second), "Panic", nil)
	var re *RemoteError
	require.ErrorAs(t, err, &re)
	assert.ErrorIs(t, err, ErrPanic)
	assert.Contains(t, re.Message, "boom")
	assert.Contains(t, re.Traceback, "(*service).Panic")
}

// guarded accepts calls only from the peer named "agent".
type guarded struct {
	remoteable.Referenceable
}

func (*guarded) RemotePolicy() remoteable.Policy {
	return remoteable.MethodPolicies{
		"Secret": remoteable.AcceptOnlyFrom("agent"),
	}
}
func (*guarded) Secret() (string, error) { return "42", nil }
func (*guarded) Public() (string, error) { return "hello", nil }

func TestAcceptOnlyFromPolicy(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, &guarded{}, WithAuthenticator(Tokens(map[string]string{"agent": "a", "intruder": "i"})))
	agent := dial(t, addr, WithName("agent"), WithToken("a"))
	intruder := dial(t, addr, WithName("intruder"), WithToken("i"))
	ctx := testkit.Ctx(t, 30*time.Second)

	s, err := Call[string](ctx, agent.Root(), "Secret")
	require.NoError(t, err)
	assert.Equal(t, "42", s)

	_, err = Call[string](ctx, intruder.Root(), "Secret")
	assert.ErrorIs(t, err, remoteable.ErrAccessDenied)
	assert.Contains(t, err.Error(), `"intruder"`)

	s, err = Call[string](ctx, intruder.Root(), "Public")
	require.NoError(t, err)
	assert.Equal(t, "hello", s)
	assert.Nil(t, intruder.Err())
}

func TestPeerIdentityInHandlerContext(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		svc := newService()
		cl, srv := tr.connect(t, svc, []Option{WithName("server-1")}, []Option{WithName("agent")})
		name, err := Call[string](testkit.Ctx(t, 30*time.Second), cl.Root(), "Whoami")
		require.NoError(t, err)
		assert.Equal(t, "agent", name)
		assert.Equal(t, "server-1", cl.Peer().Name)
		sc := serverConn(t, srv)
		assert.Equal(t, cl.Peer().ID, sc.Peer().ID, "both ends see the same connection id")
		assert.NotEmpty(t, sc.Peer().ID)
		svc.mu.Lock()
		p := svc.lastPeer
		svc.mu.Unlock()
		assert.Equal(t, sc.Peer().ID, p.ID)
		if tr.name == "tls" {
			require.NotNil(t, p.TLS)
			require.NotEmpty(t, p.TLS.PeerCertificates)
			assert.Equal(t, "agent", p.TLS.PeerCertificates[0].Subject.CommonName)
		} else {
			assert.Nil(t, p.TLS)
		}
	})
}

func TestMessageSizeLimits(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithMaxMessageSize(64<<10))
	cl := dial(t, addr, WithMaxMessageSize(32<<10))
	ctx := testkit.Ctx(t, 30*time.Second)

	// The server accepts 64 KiB: a larger call is refused before it is sent.
	err := cl.Root().Call(ctx, "Echo", nil, make([]byte, 100<<10))
	assert.ErrorIs(t, err, ErrMessageTooLarge)

	// The client accepts 32 KiB: the server refuses to send it more.
	var out []byte
	err = cl.Root().Call(ctx, "Echo", &out, make([]byte, 40<<10))
	assert.ErrorIs(t, err, ErrMessageTooLarge)
	var re *RemoteError
	assert.ErrorAs(t, err, &re, "the server refused")

	require.NoError(t, cl.Root().Call(ctx, "Echo", &out, make([]byte, 20<<10)))
	assert.Len(t, out, 20<<10)
	assert.Nil(t, cl.Err())
}

// TestLargePayloadDoesNotBlockSmallCalls sends a large call through a link
// throttled to 1 MB/s and checks that small calls complete while it is
// still on its way.
func TestLargePayloadDoesNotBlockSmallCalls(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService())
	proxy, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { proxy.Close() })
	cl := dial(t, proxy.Addr(), WithDeadPeerTimeout(30*time.Second))
	ctx := testkit.Ctx(t, 30*time.Second)
	proxy.SetBandwidth(1 << 20)

	big := bytes.Repeat([]byte{1}, 3<<20)
	bigDone := make(chan error, 1)
	go func() {
		var out []byte
		bigDone <- cl.Root().Call(ctx, "Echo", &out, big)
	}()
	time.Sleep(50 * time.Millisecond) // let the large message start
	for i := 0; i < 5; i++ {
		n, err := Call[int](ctx, cl.Root(), "Add", i, i)
		require.NoError(t, err)
		assert.Equal(t, 2*i, n)
	}
	select {
	case err := <-bigDone:
		t.Fatalf("the large call finished before the small ones (err %v): they were not interleaved", err)
	default:
	}
	proxy.SetBandwidth(0)
	require.NoError(t, <-bigDone)
}

func TestWrongTokenIsRefusedAndServerKeepsServing(t *testing.T) {
	leakcheck.Check(t)
	_, addr := startServer(t, newService(), WithToken("s3cret"))
	_, err := Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr, WithToken("guess"))
	assert.ErrorIs(t, err, ErrAuthFailed)
	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", addr)
	assert.ErrorIs(t, err, ErrAuthFailed)
	cl := dial(t, addr, WithToken("s3cret"))
	n, err := Call[int](testkit.Ctx(t, 30*time.Second), cl.Root(), "Add", 20, 22)
	require.NoError(t, err)
	assert.Equal(t, 42, n)
}

func TestHandshakeTimeout(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService(), WithHandshakeTimeout(200*time.Millisecond))
	// A peer that connects and never speaks is dropped by the server.
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = raw.Read(make([]byte, 1))
	assert.Error(t, err, "the server closed the silent connection")
	assert.Empty(t, srv.Conns())

	// A server that never answers makes Dial fail within its timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", ln.Addr().String(), WithHandshakeTimeout(200*time.Millisecond))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	(<-accepted).Close()
}

func TestTLSRequiresTrustedCertificate(t *testing.T) {
	leakcheck.Check(t)
	srvCfg, _ := tlsConfigs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, tls.NewListener(ln, srvCfg), newService())
	_, err = Dial(testkit.Ctx(t, 30*time.Second), "tcp", ln.Addr().String(), WithTLS(&tls.Config{}))
	require.Error(t, err)
	var ce *tls.CertificateVerificationError
	assert.True(t, errors.As(err, &ce), "got %v", err)
}

// TestManyConcurrentLargeMessages has more callers sending large messages
// at once than there are message streams: they take turns on them,
// and the receiver never sees more streams than allowed.
func TestManyConcurrentLargeMessages(t *testing.T) {
	leakcheck.Check(t)
	srv, addr := startServer(t, newService())
	cl := dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)
	payload := bytes.Repeat([]byte{3}, 40<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for i := 0; i < 256; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 2; j++ {
				var out []byte
				if err := cl.Root().Call(ctx, "Echo", &out, payload); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(out, payload) {
					errs <- errors.New("payload corrupted")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Nil(t, cl.Err())
	assert.Nil(t, serverConn(t, srv).Err())
}
