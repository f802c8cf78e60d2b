package cache_test

import (
	"context"
	"fmt"
	"net"
	"sort"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
	"github.com/tether-go/tether/remoteable"
)

// Prices is a manager that owns a model.
type Prices struct {
	remoteable.Referenceable
	m *cache.Map[string, int]
}

// RemoteMethods declares Model idempotent, so that a mirror follows the
// model even across a restart of its server (outages need no declaration).
func (p *Prices) RemoteMethods() remoteable.Methods {
	return remoteable.Methods{"Model": {Idempotent: true}}
}

// Model returns the model; the caller receives a *cache.Mirror.
func (p *Prices) Model(ctx context.Context) (*cache.Map[string, int], error) { return p.m, nil }

// Set changes the model from a call.
func (p *Prices) Set(ctx context.Context, item string, price int) error { return p.m.Set(item, price) }

// Example mirrors a server's model in a client. The mirror holds the
// model's state when the call returns, and a change made by a call is in
// the mirror when that call returns.
func Example() {
	ctx := context.Background()
	prices := &Prices{m: cache.NewMap[string, int]()}
	_ = prices.m.Set("apple", 3)
	reg := registry.New()
	_ = reg.Register("prices", prices)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()

	cl, _ := remote.Connect(ctx, "tcp", ln.Addr().String())
	defer cl.Close()
	ref, _ := cl.Registry().Lookup(ctx, "prices")
	var mir *cache.Mirror[string, int]
	if err := ref.Call(ctx, "Model", &mir); err != nil {
		fmt.Println(err)
		return
	}
	defer mir.Close()
	apple, _ := mir.Get("apple")
	fmt.Println("apple:", apple, "version:", mir.Version())

	_ = ref.Call(ctx, "Set", nil, "pear", 5)
	pear, _ := mir.Get("pear")
	fmt.Println("pear:", pear, "version:", mir.Version(), "stale:", mir.Stale())
	// Output:
	// apple: 3 version: 1
	// pear: 5 version: 2 stale: false
}

// ExampleView shows code that reads a model the same way whether it is
// local (a Map) or remote (a Mirror).
func ExampleView() {
	m := cache.NewMap[string, int]()
	_ = m.Set("b", 2)
	_ = m.Set("a", 1)
	m.Delete("b")
	show := func(v cache.View[string, int]) {
		var keys []string
		v.Range(func(k string, _ int) bool { keys = append(keys, k); return true })
		sort.Strings(keys)
		fmt.Println(keys, "version", v.Version(), "stale", v.Stale())
	}
	show(m)
	// Output: [a] version 3 stale false
}
