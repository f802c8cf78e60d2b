package broker

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/remoteable"
)

// This file is the wire's vocabulary (docs/protocol.md §5, §6 and §7): the
// message kinds, the CBOR tags and call extension keys, and for each
// message the one function that writes it (append* for a message made of
// plain items, encode* for one that carries a value or an error) and the
// one that reads it (parse*). Every frame this package sends or reads goes
// through them.

// msgKind is a message's kind: the first element of every body.
type msgKind uint64

// The message kinds. See docs/protocol.md §5 (Hello, Welcome, Reject) and
// §6 (the others).
const (
	msgHello   msgKind = 0
	msgWelcome msgKind = 1
	msgReject  msgKind = 2
	msgCall    msgKind = 3
	msgReturn  msgKind = 4
	msgFail    msgKind = 5
	msgCancel  msgKind = 6
	msgRelease msgKind = 7
	msgGoodbye msgKind = 8
)

// msgKindNames are the kinds' names as docs/protocol.md spells them.
var msgKindNames = [...]string{
	msgHello: "Hello", msgWelcome: "Welcome", msgReject: "Reject",
	msgCall: "Call", msgReturn: "Return", msgFail: "Fail",
	msgCancel: "Cancel", msgRelease: "Release", msgGoodbye: "Goodbye",
}

// String returns the kind's name, or its number for a kind this version
// does not know.
func (k msgKind) String() string {
	if k < msgKind(len(msgKindNames)) {
		return msgKindNames[k]
	}
	return "msgKind(" + strconv.FormatUint(uint64(k), 10) + ")"
}

// CBOR tags for the values only Tether understands. They are not registered
// with IANA; they only ever appear inside Tether frames. See docs/protocol.md.
const (
	tagSenderRef   = 59000 // uint: an object the sender exports
	tagReceiverRef = 59001 // uint: an object the receiver exported (a reference coming home)
	tagCopyable    = 59002 // [name, state]: a registered Copyable
	tagError       = 59003 // [name, message, traceback|null, detail|null, code?]: an error value
	tagCacheable   = 59004 // a reference (tag 59000 or 59001) to a Cacheable model's feed
)

// A call may carry a seventh element after its arguments: a map of
// extensions keyed by small integers. A peer that does not know a key
// skips it; one that knows none ignores the element (protocol version 1
// read only six). docs/protocol.md §6 (Call) describes it.
const (
	// extForwardedFor is the key of the identities a call acts for:
	// [[name, verifiedBy, hop?], ...], the original caller first; hop is
	// the token (Conn.hopID, never the connection ID) of the connection on
	// which that party was verified.
	extForwardedFor = 1
	// extWaitLink is the key of a boolean: true says that the caller waits
	// for links that are down (remote.WaitForLink), so that a relay
	// forwarding the call waits for its upstream link, within the call's
	// deadline, instead of failing it at once.
	extWaitLink = 2
	// extMetadata is the key of the call's metadata (see Metadata): a map
	// of text keys to text values, keys in ascending byte order.
	extMetadata = 3
	// extNestedIn is the key of the id of the receiver's own call that the
	// sender is handling while it makes this one (the call is made with
	// that call's handler context, on the connection it came on), so that
	// a draining receiver tells it from a new call (see Server.Shutdown).
	extNestedIn = 4
)

// appendMsgHead appends what every body starts with: an array of n
// elements, the first of which is the kind.
func appendMsgHead(b []byte, n int, k msgKind) []byte {
	return cborx.AppendUint(cborx.AppendArray(b, n), uint64(k))
}

// message is a received body after its head: the kind, how many elements
// the body has, and a reader positioned on the element after the kind.
type message struct {
	body  []byte
	kind  msgKind
	n     int
	r     cborx.Reader
	owned *ownedBody // body is a buffer of its own (see Conn.handleBody), or nil
	// senderRefs says the body holds a sender reference (tag 59000)
	// somewhere, as the validation found: newRefAccount looks for them
	// only then.
	senderRefs bool
}

// parseMessage validates a received body against the decoding limits and
// reads its head.
func parseMessage(body []byte) (message, error) {
	refs, err := cborx.ValidateTagged(body, decodeLimits, tagSenderRef)
	if err != nil {
		return message{}, err
	}
	m, ok, kindErr := readHead(body)
	m.senderRefs = refs
	if !ok {
		return message{}, errors.New("a message must be an array of at least two items")
	}
	if kindErr != nil {
		return message{}, errors.New("message type must be an unsigned integer")
	}
	return m, nil
}

// readHead reads a validated body's head: ok says it is an array of at
// least two elements; a kind that is not an integer reads as 0, with
// kindErr.
func readHead(body []byte) (m message, ok bool, kindErr error) {
	m = message{body: body, r: cborx.NewReader(body)}
	n, err := m.r.ReadArray()
	if err != nil || n < 2 {
		return message{}, false, nil
	}
	k, kindErr := m.r.ReadUint()
	m.n, m.kind = n, msgKind(k)
	return m, true, kindErr
}

// hello is the dialer's first message: [0, version, name, token, maxMessage].
type hello struct {
	version    uint64
	name       string
	token      string
	maxMessage uint64
}

// appendHello appends a Hello: [0, version, name, token, maxMessage].
func appendHello(b []byte, h hello) []byte {
	return appendGreeting(b, msgHello, h.version, h.name, h.token, h.maxMessage)
}

// appendGreeting appends a Hello or a Welcome, which share their layout:
// [kind, version, name, text, maxMessage].
func appendGreeting(b []byte, k msgKind, version uint64, name, text string, maxMessage uint64) []byte {
	b = appendMsgHead(b, 5, k)
	b = cborx.AppendUint(b, version)
	b = cborx.AppendText(b, name)
	b = cborx.AppendText(b, text)
	return cborx.AppendUint(b, maxMessage)
}

// parseHello reads a Hello: [0, version, name, token, maxMessage].
func parseHello(body []byte) (hello, error) {
	m, err := parseHandshake(body, "hello")
	if err != nil {
		return hello{}, err
	}
	version, err1 := m.r.ReadUint()
	name, err2 := m.r.ReadText()
	token, err3 := m.r.ReadText()
	pm, err4 := m.r.ReadUint()
	if m.n < 5 || m.kind != msgHello || errors.Join(err1, err2, err3, err4) != nil {
		return hello{}, fmt.Errorf("%w: malformed hello", ErrProtocol)
	}
	return hello{version: version, name: string(name), token: string(token), maxMessage: pm}, nil
}

// parseHandshake validates a handshake message, a Hello or the answer to
// one (what names it in errors), and reads its head. A kind that is not
// an integer reads as 0, which no answer is.
func parseHandshake(body []byte, what string) (message, error) {
	if err := cborx.Validate(body, decodeLimits); err != nil {
		return message{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	m, ok, _ := readHead(body)
	if !ok {
		return message{}, fmt.Errorf("%w: malformed %s", ErrProtocol, what)
	}
	return m, nil
}

// welcome is the server's answer: [1, version, name, connection id,
// maxMessage], or a refusal: [2, error].
type welcome struct {
	version    uint64
	name       string
	id         string
	maxMessage uint64
}

// appendWelcome appends a Welcome: [1, version, name, connectionID,
// maxMessage].
func appendWelcome(b []byte, w welcome) []byte {
	return appendGreeting(b, msgWelcome, w.version, w.name, w.id, w.maxMessage)
}

// encodeReject writes a Reject: [2, error].
func encodeReject(e *encoder, err error) error {
	e.buf = appendMsgHead(e.buf, 2, msgReject)
	return e.wireError(err)
}

// parseWelcome reads the answer to a Hello: a Welcome, [1, version, name,
// connectionID, maxMessage], or a Reject, [2, error], which it returns as
// its error (a *RemoteError the caller makes a refusal of).
func parseWelcome(body []byte) (welcome, error) {
	m, err := parseHandshake(body, "handshake reply")
	if err != nil {
		return welcome{}, err
	}
	switch m.kind {
	case msgReject:
		d := decoder{r: m.r}
		re, err := d.wireError()
		if err != nil {
			return welcome{}, fmt.Errorf("%w: malformed handshake refusal", ErrProtocol)
		}
		return welcome{}, re // the caller makes it a refusal
	case msgWelcome:
	default:
		return welcome{}, fmt.Errorf("%w: unexpected handshake reply %d", ErrProtocol, uint64(m.kind))
	}
	return parseWelcomeFields(&m.r, m.n)
}

// parseWelcomeFields reads what follows a Welcome's kind.
func parseWelcomeFields(r *cborx.Reader, n int) (welcome, error) {
	version, err1 := r.ReadUint()
	name, err2 := r.ReadText()
	id, err3 := r.ReadText()
	pm, err4 := r.ReadUint()
	if n < 5 || errors.Join(err1, err2, err3, err4) != nil {
		return welcome{}, fmt.Errorf("%w: malformed welcome", ErrProtocol)
	}
	if len(id) == 0 || len(id) > maxIdentityLabel {
		return welcome{}, fmt.Errorf("%w: the welcome's connection ID is %d bytes; want 1 to %d", ErrProtocol, len(id), maxIdentityLabel)
	}
	return welcome{version: version, name: string(name), id: string(id), maxMessage: pm}, nil
}

// callHead is what a Call says before its arguments.
type callHead struct {
	id      uint64
	target  uint64
	method  string
	timeout uint64 // nanoseconds, 0 for none
	argc    int
	ext     bool // an extension map follows the arguments
}

// appendCall appends the head of a Call, [3, callID, target, method,
// timeout, [args...]] or [3, callID, target, method, timeout, [args...],
// ext], up to the argument array's head: the caller appends the h.argc
// arguments, then, when h.ext, the extension map (appendCallExt).
func appendCall(b []byte, h callHead) []byte {
	n := 6
	if h.ext {
		n = 7
	}
	b = appendMsgHead(b, n, msgCall)
	b = cborx.AppendUint(b, h.id)
	b = cborx.AppendUint(b, h.target)
	b = cborx.AppendText(b, h.method)
	b = cborx.AppendUint(b, h.timeout)
	return cborx.AppendArray(b, h.argc)
}

// callIn is a received Call.
type callIn struct {
	id      uint64
	target  uint64
	method  []byte // in the frame: compared without a copy
	timeout uint64
	argc    int
	args    cborx.Reader // on the argument array, decoded once the call is admitted
	owned   *ownedBody   // the message's body is owned (see Conn.handleBody), or nil
	ext     callExt
	// extErr is ErrTooManyHops when the call acts for too many parties,
	// ErrInvalidMetadata when its metadata breaks the bounds: answered to
	// the caller, not a violation.
	extErr error
}

// parseCall reads a Call, [3, callID, target, method, timeout, [args...],
// ext?]: its head and its extension map, leaving the arguments to be
// decoded from c.args. An error is a protocol violation.
func parseCall(m *message) (callIn, error) {
	r := &m.r
	var c callIn
	var err1, err2, err3, err4, err5 error
	c.id, err1 = r.ReadUint()
	c.target, err2 = r.ReadUint()
	c.method, err3 = r.ReadText()
	c.timeout, err4 = r.ReadUint()
	c.args = *r
	c.argc, err5 = r.ReadArray()
	if m.n < 6 || err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
		return c, errors.New("malformed call: want [3, id, target, method, timeout, [args...]]")
	}
	c.ext, c.extErr = readCallExt(r, m.n, c.argc)
	if c.extErr != nil && !errors.Is(c.extErr, ErrTooManyHops) && !errors.Is(c.extErr, ErrInvalidMetadata) {
		return c, c.extErr
	}
	return c, nil
}

// appendCallExt appends a call's extension map: whom it acts for, if
// anyone, whether the caller waits for links, if it does, and the call's
// metadata, if it has any.
func appendCallExt(b []byte, x callExt) []byte {
	n := 0
	for _, present := range [...]bool{len(x.acting.ids) > 0, x.waitLink, len(x.md) > 0, x.nestedIn != 0} {
		if present {
			n++
		}
	}
	b = cborx.AppendMap(b, n)
	if a := x.acting; len(a.ids) > 0 {
		b = cborx.AppendUint(b, extForwardedFor)
		b = appendForwardedFor(b, a)
	}
	if x.waitLink {
		b = cborx.AppendUint(b, extWaitLink)
		b = cborx.AppendBool(b, true)
	}
	if len(x.md) > 0 {
		b = cborx.AppendUint(b, extMetadata)
		b = appendMetadata(b, x.md)
	}
	if x.nestedIn != 0 {
		b = cborx.AppendUint(b, extNestedIn)
		b = cborx.AppendUint(b, x.nestedIn)
	}
	return b
}

// appendForwardedFor appends the value of key 1: [[name, verifiedBy,
// hop?], ...].
func appendForwardedFor(b []byte, a actingFor) []byte {
	b = cborx.AppendArray(b, len(a.ids))
	for i, id := range a.ids {
		if h := a.hop(i); h != "" {
			b = cborx.AppendArray(b, 3)
			b = cborx.AppendText(b, id.Name)
			b = cborx.AppendText(b, id.VerifiedBy)
			b = cborx.AppendText(b, h)
			continue
		}
		b = cborx.AppendArray(b, 2)
		b = cborx.AppendText(b, id.Name)
		b = cborx.AppendText(b, id.VerifiedBy)
	}
	return b
}

// errMalformedExt is the protocol violation of a call extension that is not
// what appendCallExt writes.
var errMalformedExt = errors.New("malformed call extension: want a map of small integer keys; " +
	"key 1 holds [[name, verifiedBy, hop?], ...], key 2 a boolean")

// errMalformedMetadata is the protocol violation of a call's metadata
// (extension key 3) that is not a map of text to text.
var errMalformedMetadata = errors.New("malformed call extension: key 3, the metadata, must be a map of text keys to text values")

// readCallExt reads the extension of a call of n elements, if it has one,
// from r positioned on its argc arguments, which it skips: the policy
// needs whom the call acts for before the arguments are decoded.
func readCallExt(r *cborx.Reader, n, argc int) (callExt, error) {
	if n < 7 {
		return callExt{}, nil
	}
	for i := 0; i < argc; i++ {
		if err := r.Skip(); err != nil {
			return callExt{}, errors.New("malformed call arguments")
		}
	}
	return parseCallExt(r)
}

// parseCallExt reads a call's extension map. Keys it does not know are
// skipped (the frame was validated against the decoding limits, so that
// costs no more than the frame's size). It returns ErrTooManyHops (for
// the caller) when the call acts for too many parties, and another error
// for a malformed map (a protocol violation).
func parseCallExt(r *cborx.Reader) (callExt, error) {
	h, err := r.ReadHead()
	if err != nil || h.Major != cborx.MajorMap {
		return callExt{}, errMalformedExt
	}
	var x callExt
	for i := uint64(0); i < h.Arg; i++ {
		if err := parseCallExtEntry(r, &x); err != nil {
			return callExt{}, err
		}
	}
	return x, nil
}

// parseCallExtEntry reads one key of a call's extension map and its value
// into x.
func parseCallExtEntry(r *cborx.Reader, x *callExt) error {
	key, err := r.ReadUint()
	if err != nil {
		return errMalformedExt
	}
	switch key {
	case extForwardedFor:
		x.acting, err = parseForwardedFor(r)
		return err
	case extWaitLink:
		x.waitLink, err = readBool(r)
		if err != nil {
			return errMalformedExt
		}
		return nil
	case extMetadata:
		x.md, err = parseMetadata(r)
		return err
	case extNestedIn:
		if x.nestedIn, err = r.ReadUint(); err != nil {
			return errMalformedExt
		}
		return nil
	}
	if r.Skip() != nil {
		return errMalformedExt
	}
	return nil
}

// readBool reads a CBOR boolean.
func readBool(r *cborx.Reader) (bool, error) {
	v, err := r.ReadHead()
	if err != nil || v.Major != cborx.MajorSimple || (v.AI != cborx.SimpleTrue && v.AI != cborx.SimpleFalse) {
		return false, errors.New("not a boolean")
	}
	return v.AI == cborx.SimpleTrue, nil
}

// parseForwardedFor reads the value of key 1: whom the call acts for.
func parseForwardedFor(r *cborx.Reader) (actingFor, error) {
	n, err := r.ReadArray()
	if err != nil {
		return actingFor{}, errMalformedExt
	}
	if n > remoteable.MaxForwardedFor {
		return actingFor{}, fmt.Errorf("%w: the call acts for %d parties, more than %d", ErrTooManyHops, n, remoteable.MaxForwardedFor)
	}
	a := actingFor{ids: make([]remoteable.Identity, n), hops: make([]string, n)}
	for j := range a.ids {
		if err := parseForwardedEntry(r, &a, j); err != nil {
			return actingFor{}, err
		}
	}
	return a, nil
}

// parseForwardedEntry reads entry j of a forwarded-for list, [name,
// verifiedBy, hop?], into a.
func parseForwardedEntry(r *cborx.Reader, a *actingFor, j int) error {
	m, err1 := r.ReadArray()
	name, err2 := r.ReadText()
	by, err3 := r.ReadText()
	if (m != 2 && m != 3) || errors.Join(err1, err2, err3) != nil {
		return errMalformedExt
	}
	if m == 3 {
		hop, err := r.ReadText()
		if err != nil || len(hop) > maxIdentityLabel {
			return errMalformedExt
		}
		a.hops[j] = string(hop)
	}
	a.ids[j] = remoteable.Identity{Name: string(name), VerifiedBy: string(by)}
	if err := checkIdentity(a.ids[j]); err != nil {
		return fmt.Errorf("call extension: forwarded-for entry %d: %w", j+1, err)
	}
	return nil
}

// appendReturnHead appends the head of a Return, [4, callID, result], up to
// the result, which the caller encodes.
func appendReturnHead(b []byte, id uint64) []byte {
	return cborx.AppendUint(appendMsgHead(b, 3, msgReturn), id)
}

// encodeFail writes a Fail, [5, callID, error], with the handler's
// traceback if it has one to send.
func encodeFail(e *encoder, id uint64, err error, tb string) error {
	e.buf = cborx.AppendUint(appendMsgHead(e.buf, 3, msgFail), id)
	return e.wireErrorTB(err, tb)
}

// parseResult reads the call id of a Return, [4, callID, result], or a
// Fail, [5, callID, error], leaving m.r on the result or the error.
func parseResult(m *message) (uint64, error) {
	id, err := m.r.ReadUint()
	if err != nil || m.n < 3 {
		return 0, errors.New("malformed result")
	}
	return id, nil
}

// appendCancel appends a Cancel: [6, callID, mayPrecede].
func appendCancel(b []byte, id uint64, mayPrecede bool) []byte {
	b = cborx.AppendUint(appendMsgHead(b, 3, msgCancel), id)
	return cborx.AppendBool(b, mayPrecede)
}

// parseCancel reads a Cancel: [6, callID, mayPrecede?]; mayPrecede is false
// when absent.
func parseCancel(m *message) (id uint64, mayPrecede bool, err error) {
	id, err = m.r.ReadUint()
	if err != nil {
		return 0, false, errors.New("malformed cancel")
	}
	if m.n > 2 {
		if mayPrecede, err = readBool(&m.r); err != nil {
			return 0, false, errors.New("malformed cancel: the third element must be a boolean")
		}
	}
	return id, mayPrecede, nil
}

// appendRelease appends a Release: [7, objectID, count].
func appendRelease(b []byte, id, count uint64) []byte {
	b = cborx.AppendUint(appendMsgHead(b, 3, msgRelease), id)
	return cborx.AppendUint(b, count)
}

// parseRelease reads a Release: [7, objectID, count].
func parseRelease(m *message) (id, count uint64, err error) {
	id, err1 := m.r.ReadUint()
	count, err2 := m.r.ReadUint()
	if m.n < 3 || err1 != nil || err2 != nil {
		return 0, 0, errors.New("malformed release")
	}
	return id, count, nil
}

// encodeGoodbye writes a Goodbye: [8, error].
func encodeGoodbye(e *encoder, err error) error {
	e.buf = appendMsgHead(e.buf, 2, msgGoodbye)
	return e.wireError(err)
}

// parseGoodbye reads a Goodbye, [8, error]: the error the peer closes with.
func parseGoodbye(c *Conn, m *message) (*RemoteError, error) {
	d := decoder{r: m.r, c: c}
	return d.wireError()
}
