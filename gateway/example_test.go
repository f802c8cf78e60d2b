package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Calc is a manager: its exported methods are callable through the gateway.
type Calc struct{ remoteable.Referenceable }

func (*Calc) Add(ctx context.Context, a, b int) (int, error) { return a + b, nil }

// Example serves a manager, puts a gateway in front of it and calls it
// with a JSON-RPC request over HTTP, as curl or any language would.
func Example() {
	ctx := context.Background()
	reg := registry.New()
	reg.Register("calc", &Calc{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()

	cl, _ := remote.Connect(ctx, "tcp", ln.Addr().String())
	defer cl.Close()
	gw, _ := gateway.New(cl)
	defer gw.Close()
	web := httptest.NewServer(gw) // or http.ListenAndServe(addr, gw)
	defer web.Close()

	resp, err := http.Post(web.URL, "application/json",
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"calc.Add","params":[2,3]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(string(body))

	// The same, without HTTP.
	result, err := gw.Call(ctx, "calc.Add", []byte(`[40, 2]`))
	fmt.Println(string(result), err)
	_, err = gw.Call(ctx, "calc.Add", []byte(`[1.5, 2]`))
	fmt.Println(err)
	// Output:
	// {"jsonrpc":"2.0","id":1,"result":5}
	// 42 <nil>
	// tether.bad-arguments: params[0]: want an integer (int), got 1.5
}

// Scores is a manager with a model.
type Scores struct {
	remoteable.Referenceable
	m *cache.Map[string, int]
}

// Model returns the scores as a model.
func (s *Scores) Model(ctx context.Context) (*cache.Map[string, int], error) { return s.m, nil }

// Example_watch follows a model over HTTP, as a browser's EventSource or
// curl -N would: GET /watch answers Server-Sent Events, the snapshot first,
// then each change.
func Example_watch() {
	ctx := context.Background()
	scores := &Scores{m: cache.NewMap[string, int]()}
	scores.m.Set("ann", 3)
	reg := registry.New()
	reg.Register("scores", scores)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()
	cl, _ := remote.Connect(ctx, "tcp", ln.Addr().String())
	defer cl.Close()
	gw, _ := gateway.New(cl)
	defer gw.Close()
	web := httptest.NewServer(gw)
	defer web.Close()

	ctx, stop := context.WithCancel(ctx)
	defer stop() // the client going away ends the stream
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, web.URL+"/watch?method=scores.Model", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Header.Get("Content-Type"))
	lines := bufio.NewScanner(resp.Body)
	for n := 0; n < 7 && lines.Scan(); n++ { // two events, each three lines and a blank one
		line := lines.Text()
		if strings.HasPrefix(line, "data: ") {
			var ev gateway.Event
			json.Unmarshal([]byte(line[len("data: "):]), &ev)
			line = fmt.Sprintf("data: %s v%d %s", ev.Kind, ev.Version, entriesOf(ev))
		}
		fmt.Println(line)
		if n == 2 {
			scores.m.Set("bob", 5)
		}
	}
	// Output:
	// text/event-stream
	// event: snapshot
	// id: 1
	// data: snapshot v1 ["ann"]=3
	//
	// event: set
	// id: 2
	// data: set v2 ["bob"]=5
}

// entriesOf shows an event's entries, or its key and value.
func entriesOf(ev gateway.Event) string {
	if ev.Kind != "snapshot" {
		return fmt.Sprintf("[%s]=%s", ev.Key, ev.Value)
	}
	var out []string
	for _, e := range ev.Entries {
		out = append(out, fmt.Sprintf("[%s]=%s", e.Key, e.Value))
	}
	return strings.Join(out, " ")
}
