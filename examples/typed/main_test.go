package main

import (
	"strings"
	"testing"

	"github.com/tether-go/tether/internal/leakcheck"
)

// TestRun checks that the code written against Users prints the same
// through the stub as on the local manager.
func TestRun(t *testing.T) {
	leakcheck.Check(t)
	var out strings.Builder
	if err := run(&out); err != nil {
		t.Fatal(err)
	}
	const line = "2 users; alice is alice@example.org; zoe: no such user: true\n"
	if want := "local:  " + line + "remote: " + line; out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
