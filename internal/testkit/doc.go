// Package testkit holds what every package's tests need to wait without
// hanging: a context bounded for the test (Ctx) and a bounded poll for a
// condition (Eventually).
//
// It imports nothing of Tether's, so that the broker's own in-package tests
// can use it; the starters that need the broker (a server on a loopback
// port, a dialled connection, each closed at the test's end) are in the
// sub-package brokertest.
package testkit
