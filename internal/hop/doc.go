// Package hop decides how an error reads once it crosses a hop. An error
// that reports one of this process's own links failing (a dead
// connection, a client that cannot reach its server, a network error)
// names addresses, ports and the operating system's words: detail for this
// process's logs, not for a peer, to whom it would map the network behind
// this process. Such an error is sent with the same name, so that
// errors.Is still holds on the far side, and with a message that says
// which hop failed and what it cannot reach, by the names processes
// announced, never where they are.
//
// The broker applies Redact to every error it sends; the gateway to every
// error it answers with. Errors stay whole within the process.
package hop
