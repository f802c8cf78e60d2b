package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tether-go/tether/broker"
)

// readParams is the call's JSON params: -d's array (data: the JSON itself,
// @FILE, or @- for stdin) or the arguments on the command line, never
// both.
func readParams(ctx context.Context, data string, args []string, stdin io.Reader) (json.RawMessage, error) {
	if data == "" {
		return argParams(args)
	}
	if len(args) > 0 {
		return nil, usageErr("-d gives all the arguments: none may follow the method (got %q)", args)
	}
	raw, err := readData(ctx, data, stdin)
	if err != nil {
		return nil, err
	}
	if !json.Valid(raw) {
		var v any
		return nil, usageErr("-d: not JSON (%v)", json.Unmarshal(raw, &v))
	}
	return raw, nil
}

// readData is -d's text: the JSON itself, or what the file @FILE (@- or
// -: standard input) holds.
func readData(ctx context.Context, data string, stdin io.Reader) ([]byte, error) {
	switch {
	case data == "@-" || data == "-":
		b, err := readAll(ctx, stdin)
		if ctx.Err() != nil {
			return nil, &exitError{code: exitInterrupted, msg: "interrupted"}
		}
		if err != nil {
			return nil, usageErr("-d %s: reading standard input: %v", data, err)
		}
		return b, nil
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, usageErr("-d: %v", err)
		}
		return b, nil
	}
	return []byte(data), nil
}

// readAll reads r to its end, or until ctx ends (ctx's error): a terminal
// never ends by itself, and Ctrl-C must still stop the command. The
// reading goroutine cannot be stopped while r blocks; interrupted, it is
// left to the process's exit, which follows at once.
func readAll(ctx context.Context, r io.Reader) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		return res.b, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// argParams is the JSON params array of the arguments on the command line,
// by the one rule the gateway shares: each is a JSON value, and one that
// is not valid JSON is taken as a JSON string (alice is "alice").
func argParams(args []string) (json.RawMessage, error) {
	params := make([]json.RawMessage, len(args))
	for i, a := range args {
		if json.Valid([]byte(a)) {
			params[i] = json.RawMessage(a)
			continue
		}
		s, err := json.Marshal(a)
		if err != nil {
			return nil, usageErr("argument %d: %v", i+1, err)
		}
		params[i] = s
	}
	return json.Marshal(params)
}

// argHints explain, after the server refused the arguments of md, the
// arguments the shell shorthand may have surprised: a valid JSON value that
// is not a string, for a parameter that wants a string; and text that is
// not valid JSON (so it went as a string) for one that does not.
func argHints(md *broker.MethodDescription, args []string) string {
	var hints []string
	for i, a := range args {
		td := paramType(md, i)
		if td == nil {
			continue
		}
		var v any
		err := json.Unmarshal([]byte(a), &v)
		_, isString := v.(string)
		switch wantsString := td.Kind == broker.KindString; {
		case err == nil && wantsString && !isString:
			q, _ := json.Marshal(a) // marshalling a string cannot fail
			hints = append(hints, fmt.Sprintf("hint: argument %d (%s) is JSON, not a string; to pass the text, quote it: '%s'", i+1, a, q))
		case err != nil && !wantsString:
			hints = append(hints, fmt.Sprintf("hint: argument %d is not valid JSON (%v), so it went as a string; %s wants %s", i+1, err, td.Go, td.Kind))
		}
	}
	return strings.Join(hints, "\n")
}

// paramType is the type of md's i-th argument, as the gateway reads it: a
// variadic method's last parameter gives its element type to the
// arguments from there on; nil past the parameters.
func paramType(md *broker.MethodDescription, i int) *broker.TypeDescription {
	n := len(md.Params)
	switch {
	case md.Variadic && i >= n-1:
		return md.Params[n-1].Elem
	case i < n:
		return &md.Params[i]
	}
	return nil
}
