// Package docscheck holds tests that keep the documentation honest: every
// test a document names as evidence must exist.
package docscheck
