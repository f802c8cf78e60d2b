// Package faultnet is a TCP proxy for tests that breaks links on demand: it
// can reset every connection, black-hole them (keep the sockets open but drop
// every byte; when the black hole lifts, links that lost bytes are reset, as
// a TCP stream cannot skip bytes, unless Lossy is on), delay or throttle
// traffic, and refuse new connections, then restore normal service. Outage tests put it between two Tether processes.
package faultnet
