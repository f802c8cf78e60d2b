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

// ExampleNewMirror receives a model into a mirror made with options: a
// queue that holds every event of a burst for a watcher that lags behind,
// so that no event is merged.
func ExampleNewMirror() {
	ctx := context.Background()
	prices := &Prices{m: cache.NewMap[string, int]()}
	reg := registry.New()
	_ = reg.Register("prices", prices)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := broker.NewServer(reg)
	go srv.Serve(ln)
	defer srv.Close()

	cl, _ := remote.Connect(ctx, "tcp", ln.Addr().String())
	defer cl.Close()
	ref, _ := cl.Registry().Lookup(ctx, "prices")
	mir := cache.NewMirror[string, int](cache.WithQueueSize(1 << 16))
	if err := ref.Call(ctx, "Model", &mir); err != nil {
		fmt.Println(err)
		return
	}
	defer mir.Close()
	events, merged := make(chan int, 1000), 0
	mir.Changed.Connect(func(ev cache.Change[string, int]) {
		if ev.Merged {
			merged++
		}
		events <- ev.Value
	})
	for i := 1; i <= 1000; i++ {
		_ = prices.m.Set("apple", i)
	}
	last := 0
	for last != 1000 {
		last = <-events
	}
	fmt.Println("last:", last, "merged events:", merged, "merged changes:", mir.MergedChanges())
	// Output:
	// last: 1000 merged events: 0 merged changes: 0
}
