package gateway_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Point is a Copyable that travels as an array.
type Point struct {
	_    struct{} `cbor:",toarray"`
	X, Y int
}

// Order is plain data with every kind of field JSON has no word for.
type Order struct {
	ID    int64           `cbor:"id"`
	Items []string        `cbor:"items"`
	Blob  []byte          `cbor:"blob"`
	At    time.Time       `cbor:"at"`
	Qty   map[string]uint `cbor:"qty"`
	Price float64         `cbor:"price"`
}

var ErrSoldOut = errors.New("sold out")

func init() {
	remoteable.RegisterCopyable[Point]("gw.Point")
	remoteable.RegisterError("gw.sold-out", ErrSoldOut)
}

// shop is the manager the tests call through the gateway.
type shop struct {
	remoteable.Referenceable
	mu       sync.Mutex
	notes    []string
	counters []*counter
	model    *cache.Map[string, int]
}

type counter struct {
	remoteable.Referenceable
	name string
	n    int
}

func (c *counter) Add(ctx context.Context, d int) (int, error) { c.n += d; return c.n, nil }
func (c *counter) Name(ctx context.Context) (string, error)    { return c.name, nil }

func newShop() *shop { return &shop{model: cache.NewMap[string, int]()} }

func (*shop) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Model": {Idempotent: true}, "Open": {Idempotent: true}}
}

func (s *shop) Echo(ctx context.Context, v any) (any, error)      { return v, nil }
func (s *shop) Add(ctx context.Context, a, b int) (int, error)    { return a + b, nil }
func (s *shop) Place(ctx context.Context, o Order) (Order, error) { return o, nil }
func (s *shop) Move(ctx context.Context, p Point, d int) (Point, error) {
	return Point{X: p.X + d, Y: p.Y + d}, nil
}
func (s *shop) Sum(ctx context.Context, xs ...int) (int, error) {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t, nil
}
func (s *shop) Path(ctx context.Context, ps ...Point) ([]Point, error)               { return ps, nil }
func (s *shop) Small(ctx context.Context, x int8) (int8, error)                      { return x, nil }
func (s *shop) Half(ctx context.Context, x float64) (float64, error)                 { return x / 2, nil }
func (s *shop) Counts(ctx context.Context, m map[int]string) (map[int]string, error) { return m, nil }
func (s *shop) Buy(ctx context.Context, item string) error {
	return fmt.Errorf("buying %s: %w", item, ErrSoldOut)
}
func (s *shop) Panic(ctx context.Context) error { panic("the till is on fire") }
func (s *shop) Note(ctx context.Context, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, text)
	return nil
}
func (s *shop) Notes(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.notes), nil
}
func (s *shop) Open(ctx context.Context, name string) (*counter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &counter{name: name}
	s.counters = append(s.counters, c)
	return c, nil
}

// Make is Open, not declared idempotent: its counter cannot be obtained
// again after the link drops.
func (s *shop) Make(ctx context.Context, name string) (*counter, error) { return s.Open(ctx, name) }

// Mine reports whether c is one of the shop's own counters (it arrived as
// the object itself, not as a reference to a proxy).
func (s *shop) Mine(ctx context.Context, c any) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := c.(*counter)
	return ok && slices.Contains(s.counters, k), nil
}
func (s *shop) Put(ctx context.Context, k string, v int) error             { return s.model.Set(k, v) }
func (s *shop) Model(ctx context.Context) (*cache.Map[string, int], error) { return s.model, nil }

// Live returns the model too, but is not declared idempotent: a mirror of
// it cannot follow a new instance of the model after a restart.
func (s *shop) Live(ctx context.Context) (*cache.Map[string, int], error) { return s.model, nil }
func (s *shop) Slow(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// env is a Tether server publishing a shop, a lasting client to it
// through a fault-injecting proxy, and a gateway over real HTTP.
type env struct {
	shop  *shop
	proxy *faultnet.Proxy
	cl    *remote.Client
	gw    *gateway.Gateway
	http  *httptest.Server

	// deadPeer is the client's dead-peer timeout: envDeadPeer unless a
	// test that black-holes the link sets a short one (newEnvDeadPeer).
	deadPeer time.Duration
}

// envDeadPeer is the dead-peer timeout of an env's client. Outages that
// close or reset the link are found at once whatever it is; only a black
// hole waits for it. A short one (500 ms) ended links that were merely
// starved of CPU on a loaded machine under -race (CI: TestWatchStreamResyncsASlowReader
// and TestWatchStreamShowsEveryChangeAtItsVersionWhileChangesStream, "heard
// nothing for 504ms", goroutine dumps showing everything runnable).
const envDeadPeer = 10 * time.Second

func newEnv(t testing.TB, srvOpts []broker.Option, opts ...gateway.Option) *env {
	t.Helper()
	return newEnvDeadPeer(t, envDeadPeer, srvOpts, opts...)
}

// newEnvDeadPeer is newEnv with the client's dead-peer timeout d, for a
// test that needs a black hole found quickly.
func newEnvDeadPeer(t testing.TB, d time.Duration, srvOpts []broker.Option, opts ...gateway.Option) *env {
	t.Helper()
	e := &env{shop: newShop(), deadPeer: d}
	addr := startShop(t, e.shop, srvOpts...)
	var err error
	e.proxy, err = faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { e.proxy.Close() })
	return e.connect(t, e.proxy.Addr(), opts...)
}

// connect gives e a client of addr, a gateway over it, and an HTTP server
// in front of the gateway.
func (e *env) connect(t testing.TB, addr string, opts ...gateway.Option) *env {
	var err error
	e.cl, err = remote.Connect(testkit.Ctx(t, time.Minute), "tcp", addr,
		remote.WithBackoff(remote.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}),
		remote.WithBroker(broker.WithDeadPeerTimeout(cmp.Or(e.deadPeer, envDeadPeer)), broker.WithHandshakeTimeout(time.Second)))
	require.NoError(t, err)
	t.Cleanup(func() { e.cl.Close() })
	e.gw, err = gateway.New(e.cl, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { e.gw.Close() })
	e.http = httptest.NewServer(e.gw)
	t.Cleanup(e.http.Close)
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return e
}

// startShop serves a registry holding s as "shop" and returns its address.
func startShop(t testing.TB, s *shop, opts ...broker.Option) string {
	t.Helper()
	reg := registry.New()
	require.NoError(t, reg.Register("shop", s))
	_, addr := brokertest.Serve(t, reg, opts...)
	return addr
}

// post sends body and returns the status and the decoded response.
func (e *env) post(t *testing.T, body string, header ...string) (int, any) {
	t.Helper()
	req, err := http.NewRequestWithContext(testkit.Ctx(t, time.Minute), http.MethodPost, e.http.URL, bytes.NewBufferString(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if len(raw) == 0 {
		return resp.StatusCode, nil
	}
	var v any
	require.NoError(t, json.Unmarshal(raw, &v), "body %s", raw)
	return resp.StatusCode, v
}

// call sends one request and returns its response object.
func (e *env) call(t *testing.T, method string, params ...any) map[string]any {
	t.Helper()
	if params == nil {
		params = []any{}
	}
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
	require.NoError(t, err)
	status, v := e.post(t, string(body))
	require.Equal(t, http.StatusOK, status)
	m, ok := v.(map[string]any)
	require.True(t, ok, "response %v", v)
	require.Equal(t, "2.0", m["jsonrpc"])
	require.Equal(t, 7.0, m["id"])
	return m
}

// result is call's result; the call must succeed.
func (e *env) result(t *testing.T, method string, params ...any) any {
	t.Helper()
	m := e.call(t, method, params...)
	require.Nil(t, m["error"], "%s failed", method)
	return m["result"]
}

// failure is call's error object; the call must fail.
func (e *env) failure(t *testing.T, method string, params ...any) (code int, msg, name string) {
	t.Helper()
	m := e.call(t, method, params...)
	require.Nil(t, m["result"], "%s should fail", method)
	errObj, ok := m["error"].(map[string]any)
	require.True(t, ok, "response %v", m)
	data, _ := errObj["data"].(map[string]any)
	name, _ = data["name"].(string)
	return int(errObj["code"].(float64)), errObj["message"].(string), name
}

// norm is v as it comes back from JSON.
func norm(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}
