// Package logbuf is a buffer that many goroutines may write to at once: a
// test hands it to a logger (slog, the tether command) and reads what was
// logged while the code under test is still running.
package logbuf
