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
	text := out.String()
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, want := range []string{"as a Users: a *main.usersStub over a *remote.Ref", "Get(alice) through the relay", "client heard: server says hello to bob",
		"ErrDisconnected: true", "the same reference again: Get(dave)", "dropped 0 times"} {
		if !strings.Contains(text, want) {
			t.Errorf("transcript lacks %q:\n%s", want, text)
		}
	}

	// The directory mirror's story, in this order. (The relay's own
	// "connected"/"lost upstream" lines come from its signals at any time,
	// so they are left out.)
	story := []string{
		"client  directory mirror through the relay: v2 [alice=alice@example.org bob=bob@example.org] stale=false",
		"server  directory: set erin (now v3)",
		"client  directory change arrived: v3 set erin = erin@example.org",
		"proxy   --- cutting the server-relay link",
		"client  directory mirror went stale at v3 (Stale()=true) while the client's own link is connected",
		"server  during the outage: set carol, delete bob, set alice = alice@example.net (now v6)",
		"client  directory mirror still at v3, stale=true: it has missed 3 changes",
		"proxy   --- restoring the link ---",
		"client  missed change arrived: v4 set carol = carol@example.org",
		"client  missed change arrived: v5 delete bob",
		"client  missed change arrived: v6 set alice = alice@example.net",
		"client  directory mirror live again at v6 (Stale()=false)",
		"client  the 3 missed changes were replayed from the server's log, one version each (v4..v6)",
		"check   client mirror == server model: v6 [alice=alice@example.net carol=carol@example.org erin=erin@example.org], same epoch",
	}
	rest := text
	for _, want := range story {
		i := strings.Index(rest, want)
		if i < 0 {
			if strings.Contains(text, want) {
				t.Fatalf("transcript has %q out of order:\n%s", want, text)
			}
			t.Fatalf("transcript lacks %q:\n%s", want, text)
		}
		rest = rest[i+len(want):]
	}
	for _, bad := range []string{"resynchronised from a snapshot", "MISMATCH"} {
		if strings.Contains(text, bad) {
			t.Errorf("transcript has %q:\n%s", bad, text)
		}
	}
}
