package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tether-go/tether/internal/leakcheck"
)

func TestDemo(t *testing.T) {
	leakcheck.Check(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &transcript{start: time.Now(), w: &out}
	err := runAll(ctx, tr)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"Get(alice) through the relay", "client heard: server says hello to bob",
		"ErrDisconnected: true", "the same reference again: Get(dave)", "dropped 0 times"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("transcript lacks %q:\n%s", want, out.String())
		}
	}
}
