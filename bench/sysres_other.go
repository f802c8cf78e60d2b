//go:build !unix

package main

import (
	"errors"
	"time"
)

// errNoResources says this platform has no process resource figures here.
var errNoResources = errors.New("process resource figures are measured on unix systems only")

// cpuTime is not measured off unix.
func cpuTime() (time.Duration, error) { return 0, errNoResources }

// rss is not measured off unix.
func rss() (int64, error) { return 0, errNoResources }

// raiseFileLimit leaves the descriptor limit alone off unix.
func raiseFileLimit(need uint64) error { return nil }
