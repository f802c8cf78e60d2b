package docscheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestArchitectureFileMap: docs/architecture.md's map of the broker names
// every non-test file of broker/ and no other, and every package of the
// module is named somewhere in the document.
func TestArchitectureFileMap(t *testing.T) {
	doc := readDoc(t, "../../docs/architecture.md")
	start := strings.Index(doc, "\nbroker/\n")
	if start < 0 {
		t.Fatal("docs/architecture.md has no map of broker/")
	}
	block := doc[start : start+strings.Index(doc[start:], "```")]
	mapped := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+\.go) `).FindAllStringSubmatch(block, -1) {
		mapped[m[1]] = true
	}
	files, err := filepath.Glob("../../broker/*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		if !mapped[name] {
			t.Errorf("broker/%s is not in docs/architecture.md's map of the broker", name)
		}
		delete(mapped, name)
	}
	for name := range mapped {
		t.Errorf("docs/architecture.md maps broker/%s, which does not exist", name)
	}
	for _, pkg := range packages(t) {
		last := pkg[strings.LastIndex(pkg, "/")+1:]
		if !strings.Contains(doc, pkg) && !strings.Contains(doc, last) {
			t.Errorf("docs/architecture.md does not name the package %s", pkg)
		}
	}
}

// TestProtocolNamesRealFunctions: every function docs/protocol.md names as
// the writer or reader of a message is defined in the module.
func TestProtocolNamesRealFunctions(t *testing.T) {
	doc := readDoc(t, "../../docs/protocol.md")
	defined := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (?:\(\w+ \*?(\w+)(?:\[[^\]]*\])?\) )?(\w+)`)
	walkGo(t, func(path, src string) {
		if strings.HasSuffix(path, "_test.go") {
			return
		}
		pkg := filepath.Base(filepath.Dir(path))
		for _, m := range decl.FindAllStringSubmatch(src, -1) {
			defined[m[2]] = true
			if m[1] != "" {
				defined[m[1]+"."+m[2]] = true
				defined[pkg+"."+m[1]+"."+m[2]] = true // remote.Ref.findFeed
			} else {
				defined[pkg+"."+m[2]] = true
			}
		}
	})
	n := 0
	inTable := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasSuffix(line, "| written by | read by |") {
			inTable = true
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
		}
		if !inTable {
			continue
		}
		for _, cell := range strings.Split(line, "|")[2:] {
			for _, m := range regexp.MustCompile("`([A-Za-z][A-Za-z.]*)`").FindAllStringSubmatch(cell, -1) {
				n++
				if !defined[m[1]] {
					t.Errorf("docs/protocol.md names %s as a message's writer or reader: no such function", m[1])
				}
			}
		}
	}
	if n < 20 {
		t.Fatalf("only %d functions named: is the pattern right?", n)
	}
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// walkGo calls f with every .go file of the module outside bench/.
func walkGo(t *testing.T, f func(path, src string)) {
	t.Helper()
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bench" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f(path, string(src))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// packages returns the module's library package directories, relative to
// its root (examples and the packages under testdata left out).
func packages(t *testing.T) []string {
	t.Helper()
	seen := map[string]bool{}
	var out []string
	walkGo(t, func(path, _ string) {
		dir := filepath.ToSlash(filepath.Dir(strings.TrimPrefix(path, "../../")))
		if dir == "." || strings.HasPrefix(dir, "examples") || strings.Contains("/"+dir+"/", "/testdata/") || seen[dir] {
			return
		}
		seen[dir] = true
		out = append(out, dir)
	})
	return out
}
