package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/tether-go/tether/broker"
)

// The cost of the gateway over a direct call, on loopback: the same Add
// through remote.Ref, through Gateway.Call (JSON conversion), and through
// HTTP with a keep-alive client.
//
//	go test -run - -bench . -count 5 ./gateway

// benchEnv is an env without the fault-injecting proxy.
func benchEnv(b *testing.B) *env {
	e := &env{shop: newShop()}
	return e.connect(b, startShop(b, e.shop))
}

func BenchmarkDirect(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	shop, err := e.cl.Registry().Lookup(ctx, "shop")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := broker.Call[int](ctx, shop, "Add", 2, 3); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGatewayCall(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	params := []byte(`[2,3]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.gw.Call(ctx, "shop.Add", params); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGatewayHTTP(b *testing.B) {
	e := benchEnv(b)
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"shop.Add","params":[2,3]}`)
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(e.http.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
