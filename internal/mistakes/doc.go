// Package mistakes holds no code: its test is a table of the mistakes a
// new user of Tether makes, each with the exact sentinel the user gets
// (errors.Is), its broker.Code, and the words in the message that say what
// to fix. It checks the "loud by default" promise of ../../docs/guide.md
// ("When things go wrong") from a user's side: real servers on loopback,
// only the public API.
package mistakes
