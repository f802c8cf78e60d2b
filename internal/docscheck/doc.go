// Package docscheck holds tests that keep the documentation honest: every
// test a document names as evidence must exist, docs/architecture.md's
// map of the broker must list its files and no others and name every
// package, and every function docs/protocol.md names as a message's writer
// or reader must exist.
package docscheck
