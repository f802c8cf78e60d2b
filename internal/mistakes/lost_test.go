package mistakes

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remote"
)

// TestARelayPassesALostSourceOn checks guide §8: a relay whose own mirror
// lost the model (the server restarted, the method is not idempotent)
// passes that on: the client's mirror loses its source too, loudly (Err,
// Lost, Stale), with cache.ErrSourceLost classed failed_precondition.
func TestARelayPassesALostSourceOn(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	serve := func(ln net.Listener) func() {
		reg := registry.New()
		m := cache.NewMap[string, int]()
		m.Set("a", 1)
		require.NoError(t, reg.Register("library", &library{books: m}))
		srv := broker.NewServer(reg)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		return func() { srv.Close(); <-done }
	}
	stop := serve(ln)
	edge := relayTo(t, addr)
	cl, err := remote.Connect(testkit.Ctx(t, 20*time.Second), "tcp", edge)
	require.NoError(t, err)
	defer cl.Close()
	lib, err := cl.Registry().Lookup(testkit.Ctx(t, 20*time.Second), "library")
	require.NoError(t, err)
	var books *cache.Mirror[string, int]
	require.NoError(t, lib.Call(testkit.Ctx(t, 20*time.Second), "Books", &books))
	defer books.Close()
	lost := make(chan error, 1)
	books.Lost.Connect(func(err error) { lost <- err })

	stop()
	ln, err = net.Listen("tcp", addr)
	require.NoError(t, err)
	defer serve(ln)()
	select {
	case err := <-lost:
		assert.ErrorIs(t, err, cache.ErrSourceLost)
		assert.Equal(t, broker.FailedPrecondition, broker.CodeOf(err))
		assert.ErrorIs(t, books.Err(), cache.ErrSourceLost)
		assert.True(t, books.Stale())
		v, _ := books.Get("a")
		assert.Equal(t, 1, v, "a lost mirror keeps its last state")
	case <-testkit.Ctx(t, 20*time.Second).Done():
		t.Fatal("the client's mirror never reported its lost source")
	}
}
