package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/tether-go/tether/broker"
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
