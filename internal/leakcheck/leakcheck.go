package leakcheck

import (
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// Wait is how long Check waits for goroutines to finish before reporting.
var Wait = 10 * time.Second

// Check registers the check with t.Cleanup. Register it first, so that it
// runs after the cleanups that close what the test opened.
func Check(t testing.TB) {
	t.Helper()
	before := snapshot()
	t.Cleanup(func() {
		deadline := time.Now().Add(Wait)
		for {
			leaked := since(before)
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("leakcheck: %d goroutine(s) still running:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

var header = regexp.MustCompile(`^goroutine (\d+) `)

// ignored are goroutines of the runtime and test framework that come and go.
var ignored = []string{
	"runtime.runfinq",
	"runtime.runCleanups",
	"runtime.unique_runtime_registerUniqueMapCleanup",
	"testing.tRunner",
	"testing.(*T).Run",
	"testing.runFuzzing",
	"testing.(*F).Fuzz",
	"os/signal.signal_recv",
	"runtime.ensureSigM",
}

func snapshot() map[string]bool {
	ids := map[string]bool{}
	for _, g := range stacks() {
		if m := header.FindStringSubmatch(g); m != nil {
			ids[m[1]] = true
		}
	}
	return ids
}

func since(before map[string]bool) []string {
	var out []string
	for _, g := range stacks() {
		m := header.FindStringSubmatch(g)
		if m == nil || before[m[1]] || !interesting(g) {
			continue
		}
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

func interesting(g string) bool {
	for _, s := range ignored {
		if strings.Contains(g, s) {
			return false
		}
	}
	return true
}

func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Split(string(buf[:n]), "\n\n")
		}
		buf = make([]byte, 2*len(buf))
	}
}
