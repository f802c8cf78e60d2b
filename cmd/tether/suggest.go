package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/gateway"
	"github.com/tether-go/tether/registry"
)

// checkMethod finds method ("name.Method") in its manager's description
// before any argument is converted, so that a misspelt name is refused
// with the names that come close rather than with a complaint about the
// arguments. A built-in (rpc.*) is the gateway's to check: md is nil.
func checkMethod(ctx context.Context, gw *gateway.Gateway, method string) (*broker.MethodDescription, error) {
	if strings.HasPrefix(method, "rpc.") {
		return nil, nil
	}
	i := strings.LastIndexByte(method, '.')
	if i <= 0 || i == len(method)-1 {
		return nil, usageErr("method %q: want name.Method", method)
	}
	mgr, name := method[:i], method[i+1:]
	d, err := gw.Describe(ctx, mgr)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, unknownManager(ctx, gw, mgr)
	}
	if err != nil {
		return nil, callErr(err, io.Discard)
	}
	md, ok := d.Method(name)
	if !ok {
		names := make([]string, len(d.Methods))
		for i, m := range d.Methods {
			names[i] = m.Name
		}
		return nil, &exitError{code: exitCallFailed, msg: fmt.Sprintf("%s has no method %q%s", mgr, name, suggest(name, names))}
	}
	return &md, nil
}

// unknownManager is the error for a manager the server does not have,
// with the names that come close among those it has.
func unknownManager(ctx context.Context, gw *gateway.Gateway, mgr string) error {
	names, err := managerNames(ctx, gw)
	if err != nil {
		return callErr(err, io.Discard)
	}
	return &exitError{code: exitCallFailed, msg: fmt.Sprintf("no manager %q%s", mgr, suggest(mgr, names))}
}

// suggest is " (did you mean X?)" for the names closest to name (the same
// but for case, or a few letters apart), else " (there are A, B)" for a
// short list, else "".
func suggest(name string, names []string) string {
	if near := closest(name, names); len(near) > 0 {
		return fmt.Sprintf(" (did you mean %s?)", strings.Join(near, " or "))
	}
	if len(names) > 0 && len(names) <= 12 {
		return fmt.Sprintf(" (there are %s)", strings.Join(names, ", "))
	}
	return ""
}

// closest are the names equal to name but for case, else those within a
// small edit distance of it (a third of its length, at least 1, at most
// 3), the nearest first.
func closest(name string, names []string) []string {
	var same []string
	for _, n := range names {
		if strings.EqualFold(n, name) {
			same = append(same, n)
		}
	}
	if len(same) > 0 {
		return same
	}
	limit := min(max(len(name)/3, 1), 3)
	dist := map[string]int{}
	var near []string
	for _, n := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d <= limit {
			dist[n] = d
			near = append(near, n)
		}
	}
	sort.SliceStable(near, func(i, j int) bool { return dist[near[i]] < dist[near[j]] })
	return near
}

// editDistance is the number of edits between a and b, in bytes: a
// letter inserted, deleted, replaced, or two neighbours swapped (the
// optimal string alignment distance), so that Nmaes is one from Names.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
