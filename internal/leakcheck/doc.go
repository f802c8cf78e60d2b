// Package leakcheck fails a test that leaves goroutines behind.
//
// Call Check at the start of a test, before anything it starts: at the end of
// the test it waits (up to a bound, for goroutines that are already on their
// way out) and then reports every goroutine that was created during the test
// and is still running. Tests that use it must not run in parallel with
// others in the same package.
package leakcheck
