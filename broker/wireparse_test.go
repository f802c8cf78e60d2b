package broker

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/internal/cborx"
)

// frameCase is a received body that breaks the protocol, and the error
// it must be refused with.
type frameCase struct {
	name string
	body []byte
	want string
}

// wpArr builds an array of n elements from items, each of which appends
// one element (the wp* helpers below; a count that does not match makes a
// malformed frame on purpose).
func wpArr(n int, items ...func([]byte) []byte) []byte {
	b := cborx.AppendArray(nil, n)
	for _, it := range items {
		b = it(b)
	}
	return b
}

func wpUint(v uint64) func([]byte) []byte {
	return func(b []byte) []byte { return cborx.AppendUint(b, v) }
}
func wpText(s string) func([]byte) []byte {
	return func(b []byte) []byte { return cborx.AppendText(b, s) }
}
func wpArray(n int) func([]byte) []byte {
	return func(b []byte) []byte { return cborx.AppendArray(b, n) }
}
func wpMap(n int) func([]byte) []byte { return func(b []byte) []byte { return cborx.AppendMap(b, n) } }
func wpBool(v bool) func([]byte) []byte {
	return func(b []byte) []byte { return cborx.AppendBool(b, v) }
}
func wpNull() func([]byte) []byte { return func(b []byte) []byte { return cborx.AppendNull(b) } }

// wpCall is a call of n elements, its head well formed with no arguments,
// then more.
func wpCall(n int, more ...func([]byte) []byte) []byte {
	items := append([]func([]byte) []byte{wpUint(3), wpUint(1), wpUint(0), wpText("M"), wpUint(0), wpArray(0)}, more...)
	return wpArr(n, items...)
}

var malformedFrames = []frameCase{
	{"text", cborx.AppendText(nil, "x"), "a message must be an array of at least two items"},
	{"one item", wpArr(1, wpUint(3)), "a message must be an array of at least two items"},
	{"text kind", wpArr(2, wpText("x"), wpUint(1)), "message type must be an unsigned integer"},
	{"kind 99", wpArr(2, wpUint(99), wpUint(1)), "unexpected message type 99"},
	{"hello", wpArr(2, wpUint(0), wpUint(1)), "unexpected message type 0"},
	{"welcome", wpArr(2, wpUint(1), wpUint(1)), "unexpected message type 1"},
	{"reject", wpArr(2, wpUint(2), wpUint(1)), "unexpected message type 2"},
	{"call of 5", wpArr(5, wpUint(3), wpUint(1), wpUint(0), wpText("M"), wpUint(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"call text id", wpArr(6, wpUint(3), wpText("1"), wpUint(0), wpText("M"), wpUint(0), wpArray(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"call text target", wpArr(6, wpUint(3), wpUint(1), wpText("0"), wpText("M"), wpUint(0), wpArray(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"call uint method", wpArr(6, wpUint(3), wpUint(1), wpUint(0), wpUint(7), wpUint(0), wpArray(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"call text timeout", wpArr(6, wpUint(3), wpUint(1), wpUint(0), wpText("M"), wpText("0"), wpArray(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"call args not array", wpArr(6, wpUint(3), wpUint(1), wpUint(0), wpText("M"), wpUint(0), wpUint(0)), "malformed call: want [3, id, target, method, timeout, [args...]]"},
	{"ext not a map", wpCall(7, wpArray(0)), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext text key", wpCall(7, wpMap(1), wpText("k"), wpUint(1)), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext waitLink not bool", wpCall(7, wpMap(1), wpUint(2), wpUint(1)), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext waitLink null", wpCall(7, wpMap(1), wpUint(2), wpNull()), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded not array", wpCall(7, wpMap(1), wpUint(1), wpText("a")), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded entry of 1", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(1), wpText("a")), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded entry of 4", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(4), wpText("a"), wpText("b"), wpText("c"), wpText("d")), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded uint name", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(2), wpUint(1), wpText("b")), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded uint hop", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(3), wpText("a"), wpText("b"), wpUint(1)), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded long hop", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(3), wpText("a"), wpText("b"), wpText(strings.Repeat("h", 65))), "malformed call extension: want a map of small integer keys; key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean"},
	{"ext forwarded long name", wpCall(7, wpMap(1), wpUint(1), wpArray(1), wpArray(2), wpText(strings.Repeat("n", 257)), wpText("b")), "call extension: forwarded-for entry 1: the name is 257 bytes, more than the 256 a name may have"},
	{"ext forwarded long label", wpCall(7, wpMap(1), wpUint(1), wpArray(2), wpArray(2), wpText("a"), wpText("b"), wpArray(2), wpText("a"), wpText(strings.Repeat("v", 65))), "call extension: forwarded-for entry 2: the verification label is 65 bytes, more than the 64 it may have"},
	{"return of 2", wpArr(2, wpUint(4), wpUint(1)), "malformed result"},
	{"return text id", wpArr(3, wpUint(4), wpText("1"), wpUint(1)), "malformed result"},
	{"fail of 2", wpArr(2, wpUint(5), wpUint(1)), "malformed result"},
	{"cancel text id", wpArr(3, wpUint(6), wpText("1"), wpBool(true)), "malformed cancel"},
	{"cancel uint flag", wpArr(3, wpUint(6), wpUint(1), wpUint(1)), "malformed cancel: the third element must be a boolean"},
	{"cancel null flag", wpArr(3, wpUint(6), wpUint(1), wpNull()), "malformed cancel: the third element must be a boolean"},
	{"release of 2", wpArr(2, wpUint(7), wpUint(1)), "malformed release"},
	{"release text count", wpArr(3, wpUint(7), wpUint(1), wpText("1")), "malformed release"},
	{"release text id", wpArr(3, wpUint(7), wpText("1"), wpUint(1)), "malformed release"},
}

// TestMalformedMessagesEndTheConnectionAsBefore pins the error each
// malformed shape of every message ends the connection with, as the
// reader inline in handleFrame gave it before issue 14 moved the reading
// to wire.go's parse functions (the texts were taken from that reader).
// None of these reaches a connection's tables, so a bare Conn serves.
func TestMalformedMessagesEndTheConnectionAsBefore(t *testing.T) {
	for _, c := range malformedFrames {
		err := (&Conn{}).handleFrame(c.body)
		if assert.Error(t, err, c.name) {
			assert.Equal(t, c.want, err.Error(), c.name)
		}
	}
}

var malformedHellos = []frameCase{
	{"text", cborx.AppendText(nil, "x"), "tether: protocol violation: malformed hello"},
	{"one item", wpArr(1, wpUint(0)), "tether: protocol violation: malformed hello"},
	{"of 4", wpArr(4, wpUint(0), wpUint(1), wpText("n"), wpText("t")), "tether: protocol violation: malformed hello"},
	{"text kind", wpArr(5, wpText("0"), wpUint(1), wpText("n"), wpText("t"), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"kind 1", wpArr(5, wpUint(1), wpUint(1), wpText("n"), wpText("t"), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"negative kind", wpArr(5, func(b []byte) []byte { return append(b, 0x20) }, wpUint(1), wpText("n"), wpText("t"), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"text version", wpArr(5, wpUint(0), wpText("1"), wpText("n"), wpText("t"), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"uint name", wpArr(5, wpUint(0), wpUint(1), wpUint(1), wpText("t"), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"null token", wpArr(5, wpUint(0), wpUint(1), wpText("n"), wpNull(), wpUint(1024)), "tether: protocol violation: malformed hello"},
	{"text max", wpArr(5, wpUint(0), wpUint(1), wpText("n"), wpText("t"), wpText("1")), "tether: protocol violation: malformed hello"},
}
var malformedWelcomes = []frameCase{
	{"text", cborx.AppendText(nil, "x"), "tether: protocol violation: malformed handshake reply"},
	{"one item", wpArr(1, wpUint(1)), "tether: protocol violation: malformed handshake reply"},
	{"text kind", wpArr(5, wpText("1"), wpUint(1), wpText("n"), wpText("id"), wpUint(1024)), "tether: protocol violation: unexpected handshake reply 0"},
	{"kind 0", wpArr(5, wpUint(0), wpUint(1), wpText("n"), wpText("id"), wpUint(1024)), "tether: protocol violation: unexpected handshake reply 0"},
	{"kind 7", wpArr(5, wpUint(7), wpUint(1), wpText("n"), wpText("id"), wpUint(1024)), "tether: protocol violation: unexpected handshake reply 7"},
	{"of 4", wpArr(4, wpUint(1), wpUint(1), wpText("n"), wpText("id")), "tether: protocol violation: malformed welcome"},
	{"text version", wpArr(5, wpUint(1), wpText("1"), wpText("n"), wpText("id"), wpUint(1024)), "tether: protocol violation: malformed welcome"},
	{"empty id", wpArr(5, wpUint(1), wpUint(1), wpText("n"), wpText(""), wpUint(1024)), "tether: protocol violation: the welcome's connection ID is 0 bytes; want 1 to 64"},
	{"long id", wpArr(5, wpUint(1), wpUint(1), wpText("n"), wpText(strings.Repeat("i", 65)), wpUint(1024)), "tether: protocol violation: the welcome's connection ID is 65 bytes; want 1 to 64"},
	{"reject of uint", wpArr(2, wpUint(2), wpUint(1)), "tether: protocol violation: malformed handshake refusal"},
	{"reject of empty array", wpArr(2, wpUint(2), wpArray(0)), "tether: protocol violation: malformed handshake refusal"},
	{"reject of one item", wpArr(2, wpUint(2), wpArray(1), wpText("x")), "tether: protocol violation: malformed handshake refusal"},
}

// TestMalformedHandshakesAreRefusedAsBefore does the same for the
// handshake's messages, read by parseHello and parseWelcome.
func TestMalformedHandshakesAreRefusedAsBefore(t *testing.T) {
	for _, c := range malformedHellos {
		_, err := parseHello(c.body)
		if assert.ErrorIs(t, err, ErrProtocol, "hello "+c.name) {
			assert.Equal(t, c.want, err.Error(), "hello "+c.name)
		}
	}
	for _, c := range malformedWelcomes {
		_, err := parseWelcome(c.body)
		if assert.ErrorIs(t, err, ErrProtocol, "welcome "+c.name) {
			assert.Equal(t, c.want, err.Error(), "welcome "+c.name)
		}
	}
}
