package main

import (
	"context"
	"expvar"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// stats is what the running command publishes through expvar as "tether":
// the server's or the gateway client's Stats. expvar names are
// process-wide, so the variable is published once and reads whatever the
// current command stored.
var (
	stats        atomic.Pointer[func() any]
	publishStats sync.Once
)

// serveDebug serves expvar's /debug/vars on addr, with "tether" reading
// snapshot, until stop is called. It returns once the listener is up.
func serveDebug(addr string, snapshot func() any, stdout io.Writer) (stop func(), err error) {
	stats.Store(&snapshot)
	publishStats.Do(func() {
		expvar.Publish("tether", expvar.Func(func() any {
			if f := stats.Load(); f != nil {
				return (*f)()
			}
			return nil
		}))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/debug/vars", expvar.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(ln) //nolint:errcheck // ends with Shutdown
	}()
	fmt.Fprintf(stdout, "expvar on http://%s/debug/vars\n", ln.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		hs.Shutdown(sctx) //nolint:errcheck // closing anyway
		<-done
	}, nil
}

// startDebug serves -debug's expvar when the flag is set (see serveDebug);
// without it, stop does nothing. A failure to listen is a network failure
// of the command.
func startDebug(addr string, snapshot func() any, stdout io.Writer) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	stop, err = serveDebug(addr, snapshot, stdout)
	if err != nil {
		return nil, &exitError{code: exitUnreachable, msg: "-debug: " + err.Error()}
	}
	return stop, nil
}
