package arity

import "testing"

func TestWords(t *testing.T) {
	for _, c := range []struct {
		lo, hi int
		want   string
	}{
		{0, 0, "no arguments"},
		{1, 1, "1 argument"},
		{2, 2, "2 arguments"},
		{0, -1, "any number of arguments"},
		{1, -1, "at least 1 argument"},
		{3, -1, "at least 3 arguments"},
	} {
		if got := Words(c.lo, c.hi); got != c.want {
			t.Errorf("Words(%d, %d) = %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
}
