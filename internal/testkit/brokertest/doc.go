// Package brokertest starts the broker ends that tests of the packages above
// the broker share: a server on a loopback port and a dialled connection,
// each closed when the test ends.
//
// The broker's own in-package tests cannot import it (it imports the
// broker); they keep their own starters in broker/helpers_test.go.
package brokertest
