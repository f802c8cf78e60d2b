package main

import (
	"testing"

	"github.com/tether-go/tether/internal/leakcheck"
)

func TestRun(t *testing.T) {
	leakcheck.Check(t)
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
