package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestMethodIsCheckedFirst: a misspelt method or manager is refused by
// name, with the names that come close, before any argument is looked
// at (the argument here would not fit).
func TestMethodIsCheckedFirst(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	for _, c := range []struct {
		method, want string
	}{
		{"users.get", `users has no method "get" (did you mean Get?)`},
		{"users.Nmaes", `users has no method "Nmaes" (did you mean Names?)`},
		{"users.Frobnicate", `users has no method "Frobnicate" (there are Add, Get, Login, Model, Names, Remove)`},
		{"user.Get", `no manager "user" (did you mean users?)`},
		{"Gauges.Read", `no manager "Gauges" (did you mean gauges?)`},
		{"nobody.Get", `no manager "nobody" (there are gauges, users)`},
		{"usersGet", `method "usersGet": want name.Method`},
	} {
		stdout, stderr, code := tether("call", addr, c.method, `{not json`)
		want := exitCallFailed
		if !strings.Contains(c.method, ".") {
			want = exitUsage
		}
		assert.Equal(t, want, code, c.method)
		assert.Empty(t, stdout, c.method)
		assert.True(t, strings.HasPrefix(stderr, "tether call: "+c.want+"\n"), "%s: %s", c.method, stderr)
	}
	// ls and describe say the same of a manager.
	_, stderr, code := tether("ls", addr, "user")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether ls: no manager \"user\" (did you mean users?)\n", stderr)
	_, stderr, code = tether("describe", addr, "users.get")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether describe: users has no method \"get\" (did you mean Get?)\n", stderr)
}

// TestFlagsAnywhere: flags after the positional arguments are flags; after
// "--" everything is an argument.
func TestFlagsAnywhere(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	stdout, stderr, code := tether("call", addr, "users.Names", "-compact")
	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `["alice","bob"]`+"\n", stdout)
	stdout, stderr, code = tether("call", addr, "-timeout", "20s", "users.Get", "bob", "-compact")
	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `{"$type":"demo.User","email":"bob@example.com","joined":"2026-01-07T09:00:00Z","name":"bob"}`+"\n", stdout)
	stdout, _, code = tether("ls", addr, "-json")
	assert.Equal(t, exitOK, code)
	assert.True(t, json.Valid([]byte(stdout)), stdout)

	// -5 is a flag nobody defined; after "--" it is the argument -5, a
	// JSON number, which the string parameter refuses.
	_, stderr, code = tether("call", addr, "users.Get", "-5")
	assert.Equal(t, exitUsage, code)
	assert.True(t, strings.HasPrefix(stderr, "tether call: flag provided but not defined: -5\nUsage: tether call "), stderr)
	_, stderr, code = tether("call", addr, "users.Get", "--", "-5")
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, stderr, `hint: argument 1 (-5) is JSON, not a string; to pass the text, quote it: '"-5"'`)
	_, stderr, code = tether("call", addr, "-compact", "--", "users.Get", "-x")
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, stderr, `user "-x": no such user`, "not JSON, so the string -x")
}

// TestOneArgumentRule: an argument is a JSON value, or a string when it is
// not valid JSON; the gateway refuses the same number for a string
// parameter that the command refuses.
func TestOneArgumentRule(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	_, stderr, code := tether("call", addr, "users.Get", "42")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether call: error: tether.bad-arguments: params[0]: want a string (string), got a number\n"+
		"hint: argument 1 (42) is JSON, not a string; to pass the text, quote it: '\"42\"'\n", stderr)
	_, stderr, code = tether("call", addr, "users.Get", `"42"`)
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, stderr, `user "42": no such user`, "the string 42 reached the method")
	assert.NotContains(t, stderr, "hint")
	_, stderr, code = tether("call", addr, "users.Get", "true")
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, stderr, "got a boolean\nhint: argument 1 (true) is JSON")
	stdout, stderr, code := tether("call", "-compact", addr, "users.Get", "alice")
	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, `"name":"alice"`)

	out, _ := background(t, "gateway", "-upstream", addr, "-listen", "127.0.0.1:0")
	url := "http://" + waitFor(t, out, `gateway on http://(\S+),`)[1] + "/"
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"users.Get","params":[42]}`))
	require.NoError(t, err)
	var r struct{ Error struct{ Message string } }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	assert.Equal(t, "params[0]: want a string (string), got a number", r.Error.Message)
}

// TestDataFlag: -d gives all the arguments as a JSON array, inline, from a
// file or from standard input, and then no argument may follow the method.
func TestDataFlag(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	file := filepath.Join(t.TempDir(), "args.json")
	require.NoError(t, os.WriteFile(file, []byte(`[{"name":"carol","email":"carol@example.com"}]`), 0o600))

	_, stderr, code := tether("call", addr, "users.Add", "-d", "@"+file)
	require.Equal(t, exitOK, code, stderr)
	stdout, stderr, code := tetherIn(`["carol"]`, "call", "-compact", "-d", "@-", addr, "users.Get")
	assert.Equal(t, exitOK, code, stderr)
	assert.Contains(t, stdout, `"email":"carol@example.com"`)
	stdout, _, code = tether("call", "-compact", addr, "users.Get", "-d", `["bob"]`)
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, `"name":"bob"`)
	_, stderr, code = tetherIn(`["x"]`, "call", addr, "users.Get", "-d", "-")
	assert.Equal(t, exitCallFailed, code)
	assert.Contains(t, stderr, `user "x": no such user`)

	// A standard input that never ends (a terminal) does not hold the
	// command once it is interrupted.
	stdin, writer := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var errs bytes.Buffer
	assert.Equal(t, exitInterrupted, run(ctx, []string{"call", "-d", "@-", addr, "users.Get"}, stdin, io.Discard, &errs))
	assert.Equal(t, "tether call: interrupted\n", errs.String())
	writer.Close() // the reading goroutine ends

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", `["bob"]`, "bob"}, `-d gives all the arguments: none may follow the method (got ["bob"])`},
		{[]string{"-d", `[bob]`}, "-d: not JSON (invalid character 'b' looking for beginning of value)"},
		{[]string{"-d", "@" + filepath.Join(t.TempDir(), "missing.json")}, "-d: open "},
	} {
		_, stderr, code := tether(append([]string{"call", addr, "users.Get"}, c.args...)...)
		assert.Equal(t, exitUsage, code, "%q", c.args)
		assert.True(t, strings.HasPrefix(stderr, "tether call: "+c.want), "%q: %s", c.args, stderr)
	}
}

// TestDescribe: describe shows a type by its Go name, its Copyable name or
// its bare name; a manager; a method with the types it takes.
func TestDescribe(t *testing.T) {
	leakcheck.Check(t)
	addr, _ := serve(t)
	user := "main.User: copyable demo.User\n" +
		"  name    string\n" +
		"  email   string\n" +
		"  joined  time.Time\n" +
		"  tags    []string\n"
	for _, name := range []string{"main.User", "demo.User", "User"} {
		stdout, stderr, code := tether("describe", addr, name)
		assert.Equal(t, exitOK, code, stderr)
		assert.Equal(t, user, stdout, name)
	}
	stdout, _, code := tether("describe", addr, "users.Add")
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "users.Add(usr main.User) error\n\n"+user, stdout)
	stdout, _, code = tether("describe", addr, "users.Get")
	assert.Equal(t, exitOK, code)
	assert.Equal(t, "users.Get(name string) (main.User, error)  // idempotent, copyable demo.User\n\n"+user, stdout)
	stdout, _, code = tether("describe", addr, "gauges")
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout, "gauges (*main.Gauges)\n  Model() (*cache.Map[string,float64], error)  // idempotent, cacheable\n  Read(name string) (float64, error)           // idempotent\n")
	stdout, _, code = tether("describe", "-json", addr, "User")
	assert.Equal(t, exitOK, code)
	var types []map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &types))
	require.Len(t, types, 1)
	assert.Equal(t, "demo.User", types[0]["name"])

	_, stderr, code := tether("describe", addr, "Usr")
	assert.Equal(t, exitCallFailed, code)
	assert.Equal(t, "tether describe: no manager, method or type \"Usr\" (did you mean User?)\n", stderr)
}

// TestSchemeInAddr: the addresses tether serve prints are accepted; a
// tls:// one asks for the TLS flags.
func TestSchemeInAddr(t *testing.T) {
	leakcheck.Check(t)
	out, _ := background(t, "serve", "-listen", "127.0.0.1:0")
	url := waitFor(t, out, `serving on (tcp://\S+) `)[1]
	stdout, stderr, code := tether("call", "-compact", url, "users.Names")
	assert.Equal(t, exitOK, code, stderr)
	assert.Equal(t, `["alice","bob"]`+"\n", stdout)
	for _, cmd := range [][]string{{"ls", url}, {"health", url}, {"describe", url, "User"}} {
		_, stderr, code := tether(cmd...)
		assert.Equal(t, exitOK, code, "%q: %s", cmd, stderr)
	}
	gw, _ := background(t, "gateway", "-upstream", url, "-listen", "127.0.0.1:0")
	waitFor(t, gw, `gateway on http://\S+, calling tcp://`)

	tlsURL := "tls://" + strings.TrimPrefix(url, "tcp://")
	_, stderr, code = tether("call", tlsURL, "users.Names")
	assert.Equal(t, exitUsage, code)
	assert.True(t, strings.HasPrefix(stderr, `tether call: ADDR "`+tlsURL+`": the server speaks TLS: add -tls`), stderr)
	_, stderr, code = tether("health", "http://"+strings.TrimPrefix(url, "tcp://"))
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, `unknown scheme "http"`)
}

// TestUsageErrors: every subcommand says what is wrong, then its usage
// line, and exits 2.
func TestUsageErrors(t *testing.T) {
	leakcheck.Check(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ls"}, "missing ADDR"},
		{[]string{"ls", "a:1", "users", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"call"}, "missing ADDR"},
		{[]string{"call", "a:1"}, "missing name.Method"},
		{[]string{"watch"}, "missing ADDR"},
		{[]string{"watch", "a:1"}, "missing name.Method"},
		{[]string{"watch", "a:1", "users.Model", "x", "-d", "[]"}, `-d gives all the arguments: none may follow the method (got ["x"])`},
		{[]string{"health"}, "missing ADDR"},
		{[]string{"health", "a:1", "b:2"}, `unexpected arguments ["b:2"]`},
		{[]string{"describe"}, "missing ADDR"},
		{[]string{"describe", "a:1"}, "missing NAME"},
		{[]string{"describe", "a:1", "x", "y"}, `unexpected arguments ["y"]`},
		{[]string{"serve", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"serve", "-tick", "0"}, "-tick must be positive"},
		{[]string{"gateway"}, "missing -upstream ADDR (the Tether server to call)"},
		{[]string{"gateway", "-upstream", "a:1", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"gen"}, "-type is required: the names of the interfaces to write stubs for"},
		{[]string{"version", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"call", "-log-level", "loud", "a:1", "users.Names"}, `invalid value "loud" for flag -log-level`},
		{[]string{"ls", "-timeout", "0s", "a:1"}, "-timeout must be positive"},
	} {
		stdout, stderr, code := tether(c.args...)
		assert.Equal(t, exitUsage, code, "%q", c.args)
		assert.Empty(t, stdout, "%q", c.args)
		re := "^tether " + c.args[0] + ": " + regexp.QuoteMeta(c.want) + ".*\nUsage: tether " + c.args[0] + "( .*)?\nRun \"tether help " + c.args[0] + "\" for more.\n$"
		assert.Regexp(t, re, stderr, "%q", c.args)
	}
	for _, cmd := range []string{"serve", "health", "ls", "describe", "call", "watch", "gateway", "gen", "version"} {
		_, stderr, code := tether(cmd, "-no-such-flag")
		assert.Equal(t, exitUsage, code, cmd)
		assert.True(t, strings.HasPrefix(stderr, "tether "+cmd+": flag provided but not defined: -no-such-flag\nUsage: tether "+cmd), "%s: %s", cmd, stderr)
		stdout, _, code := tether("help", cmd)
		assert.Equal(t, exitOK, code, cmd)
		assert.True(t, strings.HasPrefix(stdout, "Usage: tether "+cmd), "%s: %s", cmd, stdout)
		assert.Contains(t, stdout, "Flags:", cmd)
	}
	_, stderr, code := tether("help", "nosuch")
	assert.Equal(t, exitUsage, code)
	assert.Contains(t, stderr, `tether help: unknown command "nosuch"`)
	_, _, code = tether("help", "call", "extra")
	assert.Equal(t, exitUsage, code)
}

// TestVersion: the module's version ("(devel)" in a test binary) and the
// protocol's.
func TestVersion(t *testing.T) {
	stdout, stderr, code := tether("version")
	assert.Equal(t, exitOK, code, stderr)
	assert.Regexp(t, `^tether (\(devel\)|v\S+)\nprotocol 1\ngo\S+\n$`, stdout)
}

// TestLogLevel: tether serve logs what it serves at info, and nothing
// below -log-level.
func TestLogLevel(t *testing.T) {
	leakcheck.Check(t)
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	stop := backgroundTo(t, stdout, stderr, "serve", "-listen", "127.0.0.1:0")
	waitFor(t, stderr, `level=INFO msg="tether serve: serving" addr=tcp://127\.0\.0\.1:\d+ managers=gauges,users token=false client-certs=false\n`)
	assert.Equal(t, exitOK, stop())

	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	stop = backgroundTo(t, stdout, stderr, "serve", "-listen", "127.0.0.1:0", "-log-level", "warn")
	waitFor(t, stdout, `serving on tcp://`)
	assert.Equal(t, exitOK, stop())
	assert.NotContains(t, stderr.String(), "level=INFO")
	assert.Contains(t, stdout.String(), "tether demo draining")
}
