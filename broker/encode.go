package broker

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/hop"
	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// encoder writes values into a frame for one connection. It exports the
// objects it meets (raising their counts) and remembers which, so that a
// message that is never sent can give them back (undo).
type encoder struct {
	buf        []byte
	c          *Conn
	scratch    bytes.Buffer
	exported   []uint64
	homecoming bool // the message holds a reference to an object of the receiver
	// exportName is the registry name new exports get while a Lookup's
	// result is encoded (names.go); "" otherwise.
	exportName string
	// keep holds what the message sends home until it is sent (put back
	// in the pool): the handles it was written from and the mirrors whose
	// subscriptions they are. One collected before that would post its
	// Release on the main stream ahead of the message (a handle's cleanup
	// runs as soon as the handle is unreachable, and the caller's or
	// handler's own values may be dead once encoded), and the receiver
	// would find the object gone when it decodes the message.
	keep []any
	// depth counts the Go values the encoder is inside, pointers and
	// interfaces included, so that a cyclic value fails instead of
	// recursing for ever.
	depth int
	// level is the CBOR nesting level of the next item written, the body
	// itself being level 1: what the receiver's Validate counts. A writer
	// of a frame sets it to the level of the value it encodes next.
	level int
	// scatter lets the encoder leave large byte strings out of buf: each
	// becomes a segment, written from the caller's own slice after
	// buf[:at] (writeFrame), or copied in by frame when the message goes
	// on the main stream. Set it only for a message that is sent before
	// the values it encodes may change: a call's arguments, a result.
	scatter bool
	segs    []segment
	segLen  int // the bytes of every segment
}

// segment is a byte string an encoder in scatter mode did not copy: data
// follows buf[:at] in the body.
type segment struct {
	at   int
	data []byte
}

// scatterMin is the smallest byte string an encoder in scatter mode leaves
// out of its buffer: every byte string of a message-stream frame
// (defaultMsgStreamThreshold), so that a 64 KiB value is copied once on
// the sending side, by yamux, and not into the frame first. A segment
// costs a yamux frame of its own for the piece before it (a hand-off to
// yamux's send loop); the coalescer sends that piece with the segment in
// one writev (cork), so the system calls stay as many as for a flat frame.
// Measured on 2026-12-01 against copying below 256 KiB, with the direct
// read of results (five alternating runs, medians, a busy 2-core machine):
// BenchmarkEcho64K 168 µs against 193, BenchmarkEcho64KParallel 249 against
// 292 (docs/architecture.md, "Large values"). It is above writevThreshold,
// so the coalescer writes a segment from the slice it is given.
const scatterMin = 32 << 10

var encoderPool = sync.Pool{New: func() any { return &encoder{buf: make([]byte, 0, 512)} }}

func getEncoder(c *Conn) *encoder {
	e := encoderPool.Get().(*encoder)
	e.c = c
	e.buf = append(e.buf[:0], make([]byte, cborx.FramePrefix)...)
	e.level = 1
	return e
}

// maxPooledBuffer is the largest encoding buffer kept for reuse; larger ones
// are left to the garbage collector.
const maxPooledBuffer = 1 << 20

func putEncoder(e *encoder) {
	if cap(e.buf) > maxPooledBuffer {
		e.buf = make([]byte, 0, 512)
	}
	e.c, e.exported, e.homecoming, e.depth = nil, e.exported[:0], false, 0
	e.scatter = false
	e.dropSegments(0)
	if len(e.keep) > 0 {
		clear(e.keep)
		e.keep = e.keep[:0]
	}
	e.scratch.Reset()
	encoderPool.Put(e)
}

// undo gives back every export this encoder made; the message was not sent.
func (e *encoder) undo() {
	if e.c != nil && len(e.exported) > 0 {
		e.c.unexport(e.exported)
	}
	e.exported = e.exported[:0]
}

// checkItems refuses a body the peer would refuse for holding more items
// than cborx.DefaultLimits allow, in one container or in all, so that the
// call fails here rather than the peer closing the link. Each item takes
// at least a byte, so only bodies larger than a container's limit need the
// walk.
func (e *encoder) checkItems(what string) error {
	if len(e.buf)-cborx.FramePrefix <= decodeLimits.MaxItems {
		return nil // a segment is the content of one byte string, no item
	}
	e.flatten()
	if err := cborx.Validate(e.buf[cborx.FramePrefix:], decodeLimits); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMessageTooLarge, what, err)
	}
	return nil
}

// enter accounts for an array, map or tag about to be written at the
// current level: the receiver refuses one deeper than its limit, so it
// fails here with ErrTooDeep, and otherwise the level moves down for the
// container's content. leave moves it back up.
func (e *encoder) enter() error {
	if e.level > decodeLimits.MaxDepth {
		return errTooDeep()
	}
	e.level++
	return nil
}

func (e *encoder) leave() { e.level-- }

// errTooDeep says what the limit is and what to do about it.
func errTooDeep() error {
	return fmt.Errorf("%w: a message holds at most %d levels of arrays, maps and tags, so a call's argument may nest %d levels and a result %d (a cyclic value never fits); flatten the value or send it as bytes",
		ErrTooDeep, decodeLimits.MaxDepth, decodeLimits.MaxDepth-callArgLevel+1, decodeLimits.MaxDepth-resultLevel+1)
}

// checkSegment checks what fxamacker encoded at the current level: its
// depth, which the encoder did not follow, and its text strings, which
// fxamacker writes without checking that they are UTF-8 (the receiver
// would refuse the whole message, and close the connection).
func (e *encoder) checkSegment(seg []byte) error {
	err := cborx.CheckSent(seg, decodeLimits.MaxDepth-e.level+1)
	switch {
	case errors.Is(err, cborx.ErrLimit):
		return errTooDeep()
	case errors.Is(err, cborx.ErrInvalidUTF8):
		return errNotUTF8
	}
	return err
}

// errNotUTF8 refuses a Go string that is not valid UTF-8 at the sender: a
// CBOR text string must be, and a peer refuses a message holding one that
// is not as a protocol violation.
var errNotUTF8 = errors.New("a string is not valid UTF-8, which CBOR text must be; send it as []byte, or make it valid (strings.ToValidUTF8)")

// frame returns the sealed frame (length prefix then body), in one
// buffer: segments are copied in.
func (e *encoder) frame() []byte {
	e.flatten()
	return cborx.SealFrame(e.buf)
}

// bodyLen is the length of the body written so far, segments included.
func (e *encoder) bodyLen() int { return len(e.buf) - cborx.FramePrefix + e.segLen }

// bytes writes a byte string; in scatter mode a large one's content
// becomes a segment instead of being copied.
func (e *encoder) bytes(b []byte) {
	if !e.scatter || len(b) < scatterMin {
		e.buf = cborx.AppendBytes(e.buf, b)
		return
	}
	e.buf = cborx.AppendHead(e.buf, cborx.MajorBytes, uint64(len(b)))
	e.segs = append(e.segs, segment{at: len(e.buf), data: b})
	e.segLen += len(b)
}

// flatten copies the segments into buf, for a message that is written in
// one piece. It works from the end backwards, so that buf's own bytes move
// only once and a pooled buffer with room is reused.
func (e *encoder) flatten() {
	if len(e.segs) == 0 {
		return
	}
	src, end := len(e.buf), len(e.buf)+e.segLen
	e.buf = slices.Grow(e.buf, e.segLen)[:end]
	for i := len(e.segs) - 1; i >= 0; i-- {
		s := e.segs[i]
		end -= copy(e.buf[end-(src-s.at):end], e.buf[s.at:src])
		end -= copy(e.buf[end-len(s.data):end], s.data)
		src = s.at
	}
	e.dropSegments(0)
}

// dropSegments forgets the segments that follow buf[:at] for at > keep
// (buf is cut back to keep), and lets go of their slices.
func (e *encoder) dropSegments(keep int) {
	n := len(e.segs)
	for n > 0 && e.segs[n-1].at > keep {
		n--
		e.segLen -= len(e.segs[n].data)
	}
	clear(e.segs[n:])
	e.segs = e.segs[:n]
}

// writeFrame writes the sealed frame to w: the length prefix and buf, with
// each segment written from its own slice in between. yamux copies each
// write once, into its send buffer; that copy is the only one a segment's
// bytes see before the kernel's. The piece before each segment is written
// corked (coalescer.cork) when co is not nil and w is its stream id, so
// that it leaves with the segment in one system call. It returns how many
// of the frame's bytes w took, all of them unless it fails (frameRest).
func (e *encoder) writeFrame(w io.Writer, co *coalescer, id uint32) (int, error) {
	var tmp [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(tmp[:], uint64(e.bodyLen()))
	prev := cborx.FramePrefix - k
	copy(e.buf[prev:], tmp[:k])
	written := 0
	for _, s := range e.segs {
		corked := co != nil && co.cork(id)
		n, err := writeCounted(w, e.buf[prev:s.at])
		written += n
		if err == nil {
			n, err = writeCounted(w, s.data)
			written += n
		}
		if corked {
			co.uncork(id)
		}
		if err != nil {
			return written, err
		}
		prev = s.at
	}
	n, err := writeCounted(w, e.buf[prev:])
	return written + n, err
}

// frameRest returns a copy of the frame writeFrame wrote, without its first
// skip bytes. Call it after writeFrame, which put the length prefix in place.
func (e *encoder) frameRest(skip int) []byte {
	prev := cborx.FramePrefix - uvarintLen(uint64(e.bodyLen()))
	out := make([]byte, 0, max(cborx.FramePrefix-prev+e.bodyLen()-skip, 0))
	add := func(p []byte) {
		if skip >= len(p) {
			skip -= len(p)
			return
		}
		out = append(out, p[skip:]...)
		skip = 0
	}
	for _, s := range e.segs {
		add(e.buf[prev:s.at])
		add(s.data)
		prev = s.at
	}
	add(e.buf[prev:])
	return out
}

// uvarintLen is the length of n as a uvarint.
func uvarintLen(n uint64) int {
	var tmp [binary.MaxVarintLen64]byte
	return binary.PutUvarint(tmp[:], n)
}

// writeAll writes p to w, if it is not empty, in writes of at most
// maxStreamWrite bytes.
func writeAll(w io.Writer, p []byte) error {
	_, err := writeCounted(w, p)
	return err
}

// writeCounted is writeAll, and returns how many bytes w took.
func writeCounted(w io.Writer, p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k := min(len(p), maxStreamWrite)
		n, err := w.Write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

// any encodes v by its dynamic type, with fast paths for the common scalars.
func (e *encoder) any(v any) error {
	switch x := v.(type) {
	case nil:
		e.buf = cborx.AppendNull(e.buf)
	case string:
		return e.text(x)
	case []byte:
		if x == nil {
			e.buf = cborx.AppendNull(e.buf)
		} else {
			e.bytes(x)
		}
	case int:
		e.buf = cborx.AppendInt(e.buf, int64(x))
	case int64:
		e.buf = cborx.AppendInt(e.buf, x)
	case uint64:
		e.buf = cborx.AppendUint(e.buf, x)
	case bool:
		e.buf = cborx.AppendBool(e.buf, x)
	case float64:
		e.buf = cborx.AppendFloat64(e.buf, x)
	case *Ref:
		return e.ref(x)
	case encodedCBOR:
		// Written as it is: see the seam.
		e.buf = append(e.buf, x.EncodedCBOR(cborx.Trusted{})...)
	default:
		rv := reflect.ValueOf(v)
		ti := infoOf(rv.Type())
		if ti.asError {
			// v's static type is lost (an argument, a result passed on by a
			// relay): an error travels as an error, whatever its shape.
			return e.errorValue(x.(error))
		}
		return e.value(rv, ti)
	}
	return nil
}

// value encodes v, whose type is described by ti, with the function for
// its kind. The switch calls each directly rather than through a table of
// functions: escape analysis cannot follow an indirect call, and through
// one every value encoded would escape to the heap.
func (e *encoder) value(v reflect.Value, ti *typeInfo) error {
	switch ti.kind {
	case kPure:
		return e.pure(v, ti)
	case kRef, kObject, kObjectValue, kStub:
		return e.reference(v, ti)
	case kCopyable:
		return copyableEncoder(e, v, ti)
	case kOpaque:
		return opaqueEncoder(e, v, ti)
	case kInterface:
		return interfaceEncoder(e, v, ti)
	case kCborTag:
		return cborTagEncoder(e, v, ti)
	case kCacheable:
		return cacheableEncoder(e, v, ti)
	case kPtr:
		return ptrEncoder(e, v, ti)
	case kStruct:
		return structEncoder(e, v, ti)
	case kSlice:
		return sliceEncoder(e, v, ti)
	case kArray:
		return arrayEncoder(e, v, ti)
	case kMap:
		return mapEncoder(e, v, ti)
	}
	return fmt.Errorf("cannot encode %v", ti.t)
}

// reference encodes the kinds that travel as references: a *Ref, a
// pointer to a Referenceable, a typed stub, and refuses a Referenceable
// held by value. It calls each directly, as value does.
func (e *encoder) reference(v reflect.Value, ti *typeInfo) error {
	switch ti.kind {
	case kRef:
		return refEncoder(e, v, ti)
	case kObject:
		return objectEncoder(e, v, ti)
	case kStub:
		return stubEncoder(e, v, ti)
	}
	return objectValueEncoder(e, v, ti)
}

// pure encodes plain data: the scalars directly, anything else through
// fxamacker.
func (e *encoder) pure(v reflect.Value, ti *typeInfo) error {
	switch ti.prim {
	case primBool:
		return boolEncoder(e, v, ti)
	case primInt:
		return intEncoder(e, v, ti)
	case primUint:
		return uintEncoder(e, v, ti)
	case primFloat32:
		return float32Encoder(e, v, ti)
	case primFloat64:
		return float64Encoder(e, v, ti)
	case primString:
		return stringEncoder(e, v, ti)
	case primBytes:
		return bytesEncoder(e, v, ti)
	}
	return fxEncoder(e, v, ti)
}

// null writes a null; it returns nil so that an encoder can return it.
func (e *encoder) null() error {
	e.buf = cborx.AppendNull(e.buf)
	return nil
}

// refEncoder writes a *Ref.
func refEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	return e.ref(v.Interface().(*Ref))
}

// objectEncoder exports a pointer to a Referenceable and writes a
// reference to it; an object standing for a reference on e's connection (a
// *remote.Ref, or a stub over one, going back to its target's owner) goes
// home as that reference instead, at whatever depth of the value it is.
func objectEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	obj := v.Interface()
	if h, ok := obj.(refHome); ok && e.c != nil {
		r, err := h.RefHome(e.c)
		if err != nil {
			return err // handed on, it would be a reference that always fails
		}
		if r != nil && r.c == e.c && !r.released.Load() {
			return e.ref(r)
		}
	}
	return e.object(obj)
}

// objectValueEncoder refuses a Referenceable held by value: a copy of it
// would be exported, not the object.
func objectValueEncoder(_ *encoder, _ reflect.Value, ti *typeInfo) error {
	return fmt.Errorf("%v is Referenceable and must be sent as a pointer", ti.t)
}

// cacheableEncoder writes an observable model as a reference to its feed;
// a mirror cannot be sent unless it is itself a model.
func cacheableEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return e.null()
	}
	if !ti.model {
		return fmt.Errorf("%v cannot be sent", ti.t)
	}
	return e.model(v.Interface().(remoteable.Cacheable), ti)
}

// model writes tag 59004 and the reference to model's feed: an export of
// the feed, or the subscription a mirror goes home as.
func (e *encoder) model(model remoteable.Cacheable, ti *typeInfo) error {
	feed := model.CacheFeed()
	if feed == nil {
		return fmt.Errorf("%v has no feed to send", ti.t)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	e.buf = cborx.AppendTag(e.buf, tagCacheable)
	// A mirror sent to the process that owns its source goes home: as
	// a reference to its subscription there, which the receiver
	// decodes to its own model (docs/protocol.md §11.2, "A mirror
	// going home").
	if h, ok := feed.(cacheHome); ok && e.c != nil {
		if r := h.CacheHome(e.c); r != nil && r.c == e.c && !r.released.Load() {
			e.keep = append(e.keep, model)
			return e.home(r)
		}
	}
	err := e.object(feed)
	// The model must outlive the export: a mirror nobody else holds
	// would otherwise be collected, and its feed closed, while it is
	// handed out.
	runtime.KeepAlive(model)
	return err
}

// stubEncoder writes a typed stub (remoteable.Stub) as the Caller it
// wraps: a *Ref as that reference (home to its owner when it goes back on
// its own connection), a Referenceable Caller (a *remote.Ref) as an export
// of it. A Caller that is neither cannot travel.
func stubEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return e.null()
	}
	c := v.Interface().(remoteable.Stub).TetherCaller()
	if r, ok := c.(*Ref); ok {
		return e.ref(r)
	}
	if c == nil {
		return fmt.Errorf("%v wraps no Caller, so it cannot be sent", ti.t)
	}
	cv := reflect.ValueOf(c)
	cti := infoOf(cv.Type())
	if cti.kind != kObject && cti.kind != kStub {
		return fmt.Errorf("%v wraps a %T, which cannot be sent: a stub travels as the reference it wraps (a *broker.Ref, a *remote.Ref or another Referenceable Caller)", ti.t, c)
	}
	return e.nested(cv, cti)
}

// copyableEncoder writes a registered Copyable: tag 59002, then its name
// and its own fields.
func copyableEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if err := e.enter2(); err != nil {
		return err
	}
	defer e.leave2()
	e.buf = cborx.AppendTag(e.buf, tagCopyable)
	e.buf = cborx.AppendArray(e.buf, 2)
	e.buf = cborx.AppendText(e.buf, ti.name)
	return e.nested(v, ti.state)
}

// opaqueEncoder writes a *RawCopyable exactly as its typed value travels.
func opaqueEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	o := v.Interface().(*RawCopyable)
	if o == nil {
		return e.null()
	}
	if o.Name == "" {
		return errors.New("a RawCopyable needs the name its type is registered under")
	}
	if err := e.enter2(); err != nil {
		return err
	}
	defer e.leave2()
	e.buf = cborx.AppendTag(e.buf, tagCopyable)
	e.buf = cborx.AppendArray(e.buf, 2)
	if err := e.text(o.Name); err != nil { // the caller's, unchecked
		return err
	}
	return e.depthAny(o.State)
}

// cborTagEncoder writes a cbor.Tag, refusing Tether's own tag numbers.
func cborTagEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	tag := v.Interface().(cbor.Tag)
	if isTetherTag(tag.Number) {
		// Only the codec writes Tether's tags: a forged reference would
		// upset both sides' reference counts.
		return fmt.Errorf("cannot send a Tether value (tag %d) as a cbor.Tag", tag.Number)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	e.buf = cborx.AppendTag(e.buf, tag.Number)
	return e.depthAny(tag.Content)
}

// interfaceEncoder writes an interface's dynamic value by its own type.
func interfaceEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	dv := v.Elem()
	dti := infoOf(dv.Type())
	if dti.asError {
		// An error in an interface travels as an error, whatever its shape.
		return e.errorValue(dv.Interface().(error))
	}
	return e.nested(dv, dti)
}

// ptrEncoder writes what a pointer points to, or null.
func ptrEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	return e.nested(v.Elem(), ti.elem)
}

// sliceEncoder writes a slice as an array, or null when it is nil.
func sliceEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	return arrayEncoder(e, v, ti)
}

// arrayEncoder writes the elements of a slice or array as an array.
func arrayEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	n := v.Len()
	e.buf = cborx.AppendArray(e.buf, n)
	for i := 0; i < n; i++ {
		if err := e.nested(v.Index(i), ti.elem); err != nil {
			return err
		}
	}
	return nil
}

// mapEncoder writes a map, or null when it is nil.
func mapEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	e.buf = cborx.AppendMap(e.buf, v.Len())
	it := v.MapRange()
	for it.Next() {
		if err := e.nested(it.Key(), ti.key); err != nil {
			return err
		}
		if err := e.nested(it.Value(), ti.elem); err != nil {
			return err
		}
	}
	return nil
}

func (e *encoder) nested(v reflect.Value, ti *typeInfo) error {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxValueDepth {
		return errTooDeep()
	}
	return e.value(v, ti)
}

func (e *encoder) depthAny(v any) error {
	e.depth++
	defer func() { e.depth-- }()
	if e.depth > maxValueDepth {
		return errTooDeep()
	}
	return e.any(v)
}

// enter2 enters the two levels of a Copyable: its tag and its [name, state]
// array.
func (e *encoder) enter2() error {
	if err := e.enter(); err != nil {
		return err
	}
	if err := e.enter(); err != nil {
		e.leave()
		return err
	}
	return nil
}

func (e *encoder) leave2() { e.level -= 2 }

// structEncoder writes a struct as a map of its present fields, keyed by
// name (or integer, for keyasint), or as an array if it is toarray.
func structEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if ti.toArray {
		return structArrayEncoder(e, v, ti)
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	n := 0
	for i := range ti.fields {
		if _, ok := presentField(v, &ti.fields[i]); ok {
			n++
		}
	}
	e.buf = cborx.AppendMap(e.buf, n)
	for i := range ti.fields {
		f := &ti.fields[i]
		fv, ok := presentField(v, f)
		if !ok {
			continue
		}
		if f.intKey {
			e.buf = cborx.AppendInt(e.buf, f.key)
		} else {
			e.buf = cborx.AppendText(e.buf, f.name)
		}
		if err := e.nested(fv, f.info); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	return nil
}

// structArrayEncoder writes a toarray struct as an array in field order.
// Like fxamacker, it writes every field, omitempty or not (a position
// cannot be left out), and null for one behind a nil embedded pointer.
func structArrayEncoder(e *encoder, v reflect.Value, ti *typeInfo) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	e.buf = cborx.AppendArray(e.buf, len(ti.fields))
	for i := range ti.fields {
		f := &ti.fields[i]
		fv, ok := fieldByIndex(v, f.index)
		if !ok {
			e.buf = cborx.AppendNull(e.buf)
			continue
		}
		if err := e.nested(fv, f.info); err != nil {
			return fmt.Errorf("field %s: %w", f.name, err)
		}
	}
	return nil
}

// presentField returns field f of struct v and whether it is written in
// the struct's map: omitted and unreachable fields are left out.
func presentField(v reflect.Value, f *field) (reflect.Value, bool) {
	fv, ok := fieldByIndex(v, f.index)
	if !ok || (f.omitEmpty && isEmpty(fv, f.info)) {
		return reflect.Value{}, false
	}
	return fv, true
}

// fieldByIndex follows index through embedded structs, reporting false when
// a nil embedded pointer is in the way.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// isEmpty reports whether an omitempty field holding v, of type ti, is
// left out: when it would encode as an empty CBOR value (false, 0, "",
// an empty array or map, null), the rule fxamacker applies to plain
// structs, so that a struct is laid out alike on both paths.
func isEmpty(v reflect.Value, ti *typeInfo) bool {
	switch {
	case v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer:
		return v.IsNil()
	case ti.emptiness == emptyNever:
		return false
	case ti.emptiness == emptyBinary:
		return binaryEmpty(v)
	}
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0 // -0 too
	case reflect.Struct:
		return (ti.kind == kStruct || ti.kind == kPure) && structEmpty(v, ti)
	}
	return v.IsZero()
}

// structEmpty reports whether struct v encodes as an empty map (every
// field omitempty and empty, or out of reach) or an empty array (a
// toarray struct without fields).
func structEmpty(v reflect.Value, ti *typeInfo) bool {
	if ti.toArray {
		return len(ti.fields) == 0
	}
	for i := range ti.fields {
		f := &ti.fields[i]
		if !f.omitEmpty {
			return false
		}
		if fv, ok := fieldByIndex(v, f.index); ok && !isEmpty(fv, f.info) {
			return false
		}
	}
	return true
}

// binaryEmpty reports whether v's MarshalBinary returns no bytes.
func binaryEmpty(v reflect.Value) bool {
	if !v.CanInterface() {
		return false
	}
	m, ok := v.Interface().(encoding.BinaryMarshaler)
	if !ok {
		pv := reflect.New(v.Type())
		pv.Elem().Set(v)
		m = pv.Interface().(encoding.BinaryMarshaler)
	}
	data, err := m.MarshalBinary()
	return err == nil && len(data) == 0
}

// boolEncoder writes a bool; it and the next few write the scalars the
// codec encodes itself, without fxamacker.
func boolEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	e.buf = cborx.AppendBool(e.buf, v.Bool())
	return nil
}

// intEncoder writes a signed integer in its shortest head.
func intEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	e.buf = cborx.AppendInt(e.buf, v.Int())
	return nil
}

// uintEncoder writes an unsigned integer in its shortest head.
func uintEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	e.buf = cborx.AppendUint(e.buf, v.Uint())
	return nil
}

// float32Encoder writes a float32 as a single-precision float.
func float32Encoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	e.buf = cborx.AppendFloat32(e.buf, float32(v.Float()))
	return nil
}

// float64Encoder writes a float64 as a double-precision float.
func float64Encoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	e.buf = cborx.AppendFloat64(e.buf, v.Float())
	return nil
}

// stringEncoder writes a text string.
func stringEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	return e.text(v.String())
}

// text writes s as a text string, refusing one that is not valid UTF-8
// (errNotUTF8) rather than send what the peer must refuse.
func (e *encoder) text(s string) error {
	if !utf8.ValidString(s) {
		return errNotUTF8
	}
	e.buf = cborx.AppendText(e.buf, s)
	return nil
}

// bytesEncoder writes a byte string, or null for a nil slice.
func bytesEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	if v.IsNil() {
		return e.null()
	}
	e.bytes(v.Bytes())
	return nil
}

// fxEncoder writes any other plain data through fxamacker, checking the
// depth of what it wrote.
func fxEncoder(e *encoder, v reflect.Value, _ *typeInfo) error {
	var x any
	if v.CanAddr() {
		x = v.Addr().Interface() // no copy, and pointer-receiver marshalers work
	} else {
		x = v.Interface()
	}
	e.scratch.Reset()
	if err := fxEnc.MarshalToBuffer(x, &e.scratch); err != nil {
		return err
	}
	if err := e.checkSegment(e.scratch.Bytes()); err != nil {
		return err
	}
	e.buf = append(e.buf, e.scratch.Bytes()...)
	return nil
}

// object exports obj to the connection and writes a reference to it.
func (e *encoder) object(obj any) error {
	if e.c == nil {
		return errors.New("a reference cannot be encoded outside a connection")
	}
	if e.level > decodeLimits.MaxDepth { // its tag
		return errTooDeep()
	}
	id, err := e.c.export(obj, e.exportName)
	if err != nil {
		return err
	}
	e.exported = append(e.exported, id)
	e.buf = cborx.AppendTag(e.buf, tagSenderRef)
	e.buf = cborx.AppendUint(e.buf, id)
	return nil
}

// ref writes a reference held as a *Ref: a reference back to the receiver's
// own object when r belongs to this connection, otherwise an export of what
// r stands for (a local object, or a proxy for a reference on another
// connection).
func (e *encoder) ref(r *Ref) error {
	switch {
	case r == nil:
		e.buf = cborx.AppendNull(e.buf)
		return nil
	case r.cacheable:
		// A model's feed stays a Cacheable on every hop it is passed on.
		if err := e.enter(); err != nil {
			return err
		}
		defer e.leave()
		e.buf = cborx.AppendTag(e.buf, tagCacheable)
	}
	switch {
	case r.c == nil:
		return e.object(r.obj)
	case r.released.Load():
		// Sent on, it would be a reference that always fails.
		return fmt.Errorf("%w: %v was released, so it cannot be sent; send a reference that is still held", ErrReleased, r)
	case r.c != e.c && r.c.Err() != nil:
		return fmt.Errorf("%w: %v cannot be sent: its connection has ended; obtain the object again over a live connection (a *remote.Ref does that by itself)",
			ErrDeadReference, r)
	case e.c != nil && r.c == e.c:
		return e.home(r)
	default:
		return e.object(r)
	}
}

// home writes a reference back to the receiver's own object r denotes (r
// lives on e.c), keeping r reachable until the message is sent (see keep).
func (e *encoder) home(r *Ref) error {
	if e.level > decodeLimits.MaxDepth { // its tag
		return errTooDeep()
	}
	e.homecoming = true
	e.keep = append(e.keep, r)
	e.buf = cborx.AppendTag(e.buf, tagReceiverRef)
	e.buf = cborx.AppendUint(e.buf, r.id)
	return nil
}

// refHome is implemented by a lasting reference (remote.Ref, through
// internal/refhome): RefHome returns its target when that lives on c, or
// nil, and an error that says why it cannot be sent at all (its client was
// closed), or nil.
type refHome interface {
	RefHome(c *Conn) (*Ref, error)
}

// cacheHome is implemented by a mirror's feed (the publisher a mirror's
// CacheFeed returns): CacheHome returns the mirror's subscription to its
// source when that subscription lives on c, or nil.
type cacheHome interface {
	CacheHome(c *Conn) *Ref
}

// errorValue writes err as an error value (tag and wire form).
func (e *encoder) errorValue(err error) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	e.buf = cborx.AppendTag(e.buf, tagError)
	return e.errorArray(err, "")
}

// reset empties the encoder for a different message; undo first if it
// exported anything.
func (e *encoder) reset() {
	e.dropSegments(0)
	e.buf = e.buf[:cborx.FramePrefix]
	e.homecoming = false
}

// result encodes a handler's result.
func (e *encoder) result(o *outcome) error {
	if o.feed != nil {
		if err := e.enter(); err != nil {
			return err
		}
		defer e.leave()
		e.buf = cborx.AppendTag(e.buf, tagCacheable)
		return e.object(o.feed)
	}
	if o.ti == nil {
		return e.any(o.generic)
	}
	if o.byRef {
		return e.byReference(o.v)
	}
	return e.value(o.v, o.ti)
}

// byReference sends v by reference whatever its type (MethodOptions.ByReference).
func (e *encoder) byReference(v reflect.Value) error {
	for v.Kind() == reflect.Interface {
		if v.IsNil() {
			e.buf = cborx.AppendNull(e.buf)
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		if v.IsNil() {
			e.buf = cborx.AppendNull(e.buf)
			return nil
		}
	}
	x := v.Interface()
	if r, ok := x.(*Ref); ok {
		return e.ref(r)
	}
	return e.object(x)
}

// wireError writes [name, message, traceback|null, detail|null] as an
// element of a message's top array ([5, id, error], [8, error], ...).
func (e *encoder) wireError(err error) error { return e.wireErrorTB(err, "") }

func (e *encoder) wireErrorTB(err error, tb string) error {
	e.level = 2
	return e.errorArray(err, tb)
}

// errorArray writes the error array at the current level. A detail that
// cannot be encoded there (too deep, say) is left out (null): the name and
// message matter more.
func (e *encoder) errorArray(err error, tb string) error {
	w := describeError(err)
	if tb == "" {
		tb = w.tb
	}
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	code := CodeOf(err)
	if code == Unknown {
		e.buf = cborx.AppendArray(e.buf, 4)
	} else {
		e.buf = cborx.AppendArray(e.buf, 5)
	}
	e.buf = cborx.AppendText(e.buf, validText(w.name))
	e.buf = cborx.AppendText(e.buf, validText(e.message(err)))
	e.textOrNull(validText(tb))
	e.errorDetail(w)
	if code != Unknown {
		e.buf = cborx.AppendUint(e.buf, uint64(code))
	}
	return nil
}

// validText returns s with any bytes that are not UTF-8 replaced: an
// error's text is for people, and refusing it would lose the error.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// textOrNull writes s, or null when it is empty.
func (e *encoder) textOrNull(s string) {
	if s == "" {
		e.buf = cborx.AppendNull(e.buf)
		return
	}
	e.buf = cborx.AppendText(e.buf, s)
}

// errorDetail writes an error's detail: a registered error's value, a
// remote error's detail passed on, or null.
func (e *encoder) errorDetail(w errorWire) {
	switch {
	case w.detail != nil:
		mark, exported := len(e.buf), len(e.exported)
		dv := reflect.ValueOf(w.detail)
		if e.nested(dv, infoOf(dv.Type())) != nil {
			// The name and message still go; what the detail exported
			// before it failed is taken back.
			if e.c != nil && len(e.exported) > exported {
				e.c.unexport(e.exported[exported:])
			}
			e.exported = e.exported[:exported]
			e.dropSegments(mark)
			e.buf = cborx.AppendNull(e.buf[:mark])
		}
	case w.raw != nil && e.checkSegment(w.raw) == nil:
		e.buf = append(e.buf, w.raw...)
	default:
		e.buf = cborx.AppendNull(e.buf)
	}
}

// message is err's text for the peer: without the addresses and system
// texts of this process's own link failures and network errors (see
// package hop), which are logged at debug level instead.
func (e *encoder) message(err error) string {
	if e.c == nil {
		return err.Error() // a handshake's refusal: no link of ours failed
	}
	msg, redacted := hop.Redact(err, hop.Self{Name: e.c.opts.name, Role: "relay"})
	if redacted {
		e.c.opts.logger.Debug("tether: an error sent to the peer without its local detail", "peer", e.c.peer.Name, "sent", msg, "err", err)
	}
	return msg
}

// errorWire is how an error travels, as describeError works it out.
type errorWire struct {
	name   string
	detail error  // a registered error type's value, sent as the detail
	raw    []byte // the detail of a remote error passed on, as it came
	tb     string // the traceback of a remote error passed on
}

// describeError picks the name an error travels under: a dead link's name
// (a relay whose upstream failed during the call), else the first
// registered error in its chain, else the name of a remote error it wraps
// (a relay passing an error on), else its innermost Go type.
func describeError(err error) errorWire {
	var w errorWire
	var re *RemoteError
	remote := errors.As(err, &re)
	if remote {
		w.tb = re.Traceback
	}
	var le *linkError
	if errors.As(err, &le) {
		// Its cause is a network error of this process, which would name
		// it by its Go type: say what it means instead.
		w.name = "tether.dead-reference"
		if le.inFlight {
			w.name = "tether.connection-lost"
		}
		return w
	}
	entry, found := typereg.FindError(err)
	switch {
	case entry != nil:
		w.name = entry.Name
		if entry.Type != nil {
			w.detail = found
		}
	case remote:
		w.name, w.raw = re.Name, re.detail
	default:
		w.name = goErrorName(err)
	}
	return w
}

// goErrorName names an error by its innermost Go type; errors made by
// errors.New and fmt.Errorf are just "error".
func goErrorName(err error) string {
	inner := err
	for {
		u, ok := inner.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			break
		}
		inner = u.Unwrap()
	}
	name := fmt.Sprintf("%T", inner)
	if name == "*errors.errorString" || strings.HasPrefix(name, "*fmt.wrapError") {
		return "error"
	}
	return name
}
