package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/faultnet"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/logbuf"
)

// syncBuffer is a buffer a logger or a running command writes while the
// test reads it.
type syncBuffer = logbuf.Buffer

// waitFor polls out until re matches, and returns the match.
func waitFor(t *testing.T, out *syncBuffer, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := rx.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", re, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// background runs the command until the test ends (or stop is called) and
// returns its output (stdout and stderr together) and a function that
// stops it and returns its exit code.
func background(t *testing.T, args ...string) (out *syncBuffer, stop func() int) {
	t.Helper()
	out = &syncBuffer{}
	return out, backgroundTo(t, out, out, args...)
}

// backgroundTo is background writing stdout and stderr where the test
// says.
func backgroundTo(t *testing.T, stdout, stderr *syncBuffer, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- run(ctx, args, strings.NewReader(""), stdout, stderr) }()
	var once sync.Once
	result := -1
	stop = func() int {
		once.Do(func() { cancel(); result = <-code })
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// serve starts the demo server on a free port and returns its address.
func serve(t *testing.T, args ...string) (addr string, stop func() int) {
	t.Helper()
	out, stop := background(t, append([]string{"serve", "-listen", "127.0.0.1:0"}, args...)...)
	m := waitFor(t, out, `serving on tcp://(\S+) `)
	return m[1], stop
}

// tether runs one command to its end, with nothing on its stdin.
func tether(args ...string) (stdout, stderr string, code int) {
	return tetherIn("", args...)
}

// tetherIn runs one command to its end, with stdin on its stdin.
func tetherIn(stdin string, args ...string) (stdout, stderr string, code int) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &o, &e)
	return o.String(), e.String(), code
}

func TestLsAndCall(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)

	out, _, code := tether("ls", addr)
	assert.Equal(t, exitOK, code)
	assert.Regexp(t, `(?m)^gauges\s+\*main\.Gauges\s+2 methods$`, out)
	assert.Regexp(t, `(?m)^users\s+\*main\.Users\s+6 methods$`, out)

	out, _, code = tether("ls", addr, "users")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "users (*main.Users)")
	assert.Regexp(t, `Get\(name string\) \(main\.User, error\)\s+// idempotent, copyable demo\.User\n`, out)
	assert.Regexp(t, `Login\(string\) \(\*main\.Session, error\)\s+// reference\n`, out)
	// (A generic type's argument is named by its package path's last
	// element: tether.User in a test binary, main.User in the command.)
	assert.Regexp(t, `Model\(\) \(\*cache\.Map\[string,(main|tether)\.User\], error\)\s+// idempotent, cacheable\n`, out)
	out, _, code = tether("ls", "-json", addr, "users")
	assert.Equal(t, exitOK, code)
	var d map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	assert.Equal(t, "*main.Users", d["type"])

	out, _, code = tether("call", addr, "users.Get", "alice")
	assert.Equal(t, exitOK, code)
	var u map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &u))
	assert.Equal(t, map[string]any{"$type": "demo.User", "name": "alice", "email": "alice@example.com", "joined": "2026-01-05T09:00:00Z", "tags": []any{"admin"}}, u)

	_, _, code = tether("call", addr, "users.Add", `{"name":"carol","email":"carol@example.com"}`)
	assert.Equal(t, exitOK, code)
	out, _, code = tether("call", "-compact", addr, "users.Names")
	assert.Equal(t, exitOK, code)
	assert.Equal(t, `["alice","bob","carol"]`+"\n", out)

	out, _, code = tether("call", addr, "users.Login", "bob")
	assert.Equal(t, exitOK, code)
	assert.Regexp(t, `"\$ref": "ref-[0-9a-f-]{36}"`, out, "a reference prints as a typed handle")
	assert.Contains(t, out, `"type": "*main.Session"`)

	out, _, code = tether("call", addr, "users.Model")
	assert.Equal(t, exitOK, code)
	assert.Regexp(t, `"\$cacheable": "\*cache\.Map\[string,(main|tether)\.User\]"`, out)

	// Errors: their name and message, and an exit code a script can test.
	_, errOut, code := tether("call", addr, "users.Get", "nobody")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether call: error: demo.no-such-user: user \"nobody\": no such user\n", errOut)
	_, errOut, code = tether("call", addr, "users.Nope")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether call: users has no method \"Nope\" (there are Add, Get, Login, Model, Names, Remove)\n", errOut)
	_, errOut, code = tether("call", addr, "users.Add", `{"nom":"x"}`)
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, errOut, `has no field "nom"`)
	// Not JSON, so a string, which a struct parameter refuses; the hint
	// says why.
	_, errOut, code = tether("call", addr, "users.Add", `{not json`)
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, errOut, "params[0]: want an object (main.User), got a string\nhint: argument 1 is not valid JSON (invalid character 'n' looking for beginning of object key string), so it went as a string; main.User wants copyable\n")
}

func TestExitCodesAndUsage(t *testing.T) {
	leakcheck.Check(t)
	_, errOut, code := tether()
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "Usage:")
	_, errOut, code = tether("frobnicate")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, `unknown command "frobnicate"`)
	out, _, code := tether("help")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, out, "Exit codes")

	for _, cmd := range []string{"serve", "ls", "call", "watch", "gateway"} {
		_, errOut, code := tether(cmd, "-h")
		assert.Equal(t, exitOK, code, cmd)
		assert.Contains(t, errOut, "Usage: tether "+cmd, cmd)
		assert.Contains(t, errOut, "Flags:", cmd)
		_, _, code = tether(cmd, "-no-such-flag")
		assert.Equal(t, exitUsage, code, cmd)
	}
	for _, cmd := range []string{"ls", "call", "watch"} {
		assert.Contains(t, func() string { _, e, _ := tether(cmd, "-h"); return e }(), "-token", cmd)
		assert.Contains(t, func() string { _, e, _ := tether(cmd, "-h"); return e }(), "-cacert", cmd)
	}
	_, _, code = tether("call", "127.0.0.1:1")
	assert.Equal(t, exitUsage, code, "no method")
	_, _, code = tether("gateway")
	assert.Equal(t, exitUsage, code, "no upstream")

	// Nothing listens: exit 3, quickly, with the reason.
	_, errOut, code = tether("call", "-timeout", "5s", "127.0.0.1:1", "users.Get", "alice")
	assert.Equal(t, exitUnreachable, code)
	assert.Contains(t, errOut, "connection refused")

	// A wrong token is refused at the handshake: exit 4, not an outage.
	addr, _ := serve(t, "-token", "s3cret")
	_, errOut, code = tether("call", "-token", "wrong", addr, "users.Names")
	assert.Equal(t, exitRefused, code)
	assert.Contains(t, errOut, "auth")
	_, _, code = tether("call", "-token", "s3cret", addr, "users.Names")
	assert.Equal(t, exitOK, code)
}

// TestWatchAcrossAnOutage runs tether watch through a link that is cut
// and restored: it prints the snapshot, the changes, stale, the changes
// made meanwhile, and live.
func TestWatchAcrossAnOutage(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t, "-tick", "1h") // the gauges stay still
	p, err := faultnet.New(addr)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	// The events are on stdout; the outage's log lines go to stderr.
	out, logs := &syncBuffer{}, &syncBuffer{}
	stop := backgroundTo(t, out, logs, "watch", p.Addr(), "users.Model")
	waitFor(t, out, `snapshot v2 \(2 entries\)\n  "alice" = \{.*\}\n  "bob" = \{.*\}\n`)

	_, _, code := tether("call", addr, "users.Add", `{"name":"carol"}`)
	require.Equal(t, exitOK, code)
	waitFor(t, out, `v3 set "carol" = \{"\$type":"demo.User",.*"name":"carol"\}\n`)

	p.Refuse(true)
	p.Reset()
	waitFor(t, out, `stale: the link to the model is down \(at v3\)\n`)
	_, _, code = tether("call", addr, "users.Remove", "bob")
	require.Equal(t, exitOK, code)
	p.Refuse(false)
	waitFor(t, out, `stale: .*\nv4 delete "bob"\nlive: in sync again at v4\n`)

	assert.Equal(t, exitOK, stop(), "interrupted: exit 0")
	assert.Equal(t, 1, strings.Count(out.String(), `delete "bob"`), "once")
}

func TestGatewayCommand(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	out, stop := background(t, "gateway", "-upstream", addr, "-listen", "127.0.0.1:0", "-http-token", "t0k")
	url := "http://" + waitFor(t, out, `gateway on http://(\S+),`)[1] + "/"

	body := `{"jsonrpc":"2.0","id":1,"method":"users.Get","params":["alice"]}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer t0k")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var r map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	resp.Body.Close()
	assert.Equal(t, "alice", r["result"].(map[string]any)["name"])
	http.DefaultClient.CloseIdleConnections()
	assert.Equal(t, exitOK, stop())
}

// TestInterrupted: a server that accepts but never answers. Interrupted,
// call exits 130 and watch exits 0 (its normal end).
func TestInterrupted(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var held []net.Conn
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepting
		for _, c := range held {
			c.Close()
		}
	})
	for cmd, want := range map[string]int{"call": exitInterrupted, "watch": exitOK} {
		out, stop := background(t, cmd, "-timeout", "1m", ln.Addr().String(), "users.Model")
		time.Sleep(200 * time.Millisecond)
		assert.Equal(t, want, stop(), "%s: %s", cmd, out.String())
	}
	_, errOut, code := tether("call", "nohost", "users.Names")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, errOut, "want host:port")
}

// TestServeExpvar: tether serve -debug publishes the server's Stats.
func TestServeExpvar(t *testing.T) {
	leakcheck.Check(t)
	out, _ := background(t, "serve", "-listen", "127.0.0.1:0", "-debug", "127.0.0.1:0")
	vars := waitFor(t, out, `expvar on (http://\S+)\n`)[1]
	addr := waitFor(t, out, `serving on tcp://(\S+) `)[1]
	_, _, code := tether("call", addr, "users.Names")
	require.Equal(t, exitOK, code)
	resp, err := http.Get(vars)
	require.NoError(t, err)
	var v struct {
		Tether map[string]any `json:"tether"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	assert.Equal(t, 1.0, v.Tether["accepted"])
	assert.Contains(t, v.Tether, "exports")
	assert.Contains(t, v.Tether, "observers")
}
