package arity

import "fmt"

// Words returns "no arguments", "1 argument", "2 arguments", or "at least
// 1 argument" when hi is negative (a variadic method taking at least lo).
func Words(lo, hi int) string {
	if hi < 0 {
		if lo == 0 {
			return "any number of arguments"
		}
		return "at least " + count(lo)
	}
	return count(lo)
}

func count(n int) string {
	switch n {
	case 0:
		return "no arguments"
	case 1:
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}
