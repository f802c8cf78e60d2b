package broker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"unsafe"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/internal/cborx"
	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// decoder reads values from a validated frame for one connection. It imports
// the references it meets (raising their counts) and remembers which, so that
// a message that is rejected half-way can release them again (undo).
type decoder struct {
	r        cborx.Reader
	c        *Conn
	imported []*Ref
	opaque   bool        // relay mode: keep Copyables as *RawCopyable, registered or not
	owned    *ownedBody  // r reads a body in a buffer of its own (see alias), or nil
	acct     *refAccount // the message's reference accounting, if it is a peer's message
	depth    int
	attach   []attachTask // mirrors decoded, to attach before the value is handed over
}

// attachTask is a mirror the decoder made, to be subscribed to its model's
// feed outside the reader goroutine (attaching takes round trips).
type attachTask struct {
	m    remoteable.CacheMirror
	feed *Ref
}

// runAttach attaches decoded mirrors in order. If one fails, those already
// attached are closed and the rest are given back.
func runAttach(ctx context.Context, tasks []attachTask) error {
	for i, t := range tasks {
		if err := t.m.AttachCache(ctx, t.feed); err != nil {
			for _, done := range tasks[:i] {
				if c, ok := done.m.(interface{ Close() error }); ok {
					_ = c.Close()
				}
			}
			for _, rest := range tasks[i:] {
				rest.feed.Release()
			}
			return fmt.Errorf("cannot attach mirror: %w", err)
		}
	}
	return nil
}

// refAccount makes sure every reference a peer's message carries is
// released if it does not become a handle: references in arguments that
// failed to decode, in skipped fields, in results nobody waits for. It
// counts them from the frame's bytes, then subtracts those the decoders
// turned into handles (which their own Release gives back).
//
// A message carries one reference or a few (a fetched object, a callback),
// so the counts live in a small array, searched in order, and the account
// comes from a pool: a message with references costs no allocation. Only a
// message with more than refAccountScan distinct ids indexes them in a map,
// so that a peer sending many cannot make the search quadratic.
type refAccount struct {
	refs []refCount     // one entry per distinct id, in order of appearance
	inl  [4]refCount    // the first entries' storage
	idx  map[uint64]int // id to its entry, once there are many
}

// refCount is what a message did with the references to one object.
type refCount struct {
	id   uint64
	sent uint64 // sender references in the frame
	took uint64 // those that became handles
}

// refAccountScan is the most distinct ids refAccount searches in order
// before it indexes them.
const refAccountScan = 8

var refAccountPool = sync.Pool{New: func() any { return new(refAccount) }}

// newRefAccount counts the sender references in m's body; nil if it has
// none besides roots. The body is walked only when its validation saw a
// sender reference's tag (message.senderRefs): a cache batch pushed to a
// thousand mirrors, or a large value, is not read once more per frame.
func newRefAccount(m *message) *refAccount {
	if !m.senderRefs {
		return nil
	}
	var a *refAccount
	_ = cborx.CollectTagged(m.body, tagSenderRef, func(id uint64) {
		if id == 0 {
			return // roots are not counted
		}
		if a == nil {
			a = refAccountPool.Get().(*refAccount)
			a.refs = a.inl[:0]
		}
		a.entry(id).sent++
	})
	return a
}

// entry returns the counts for id, adding them if id is new.
func (a *refAccount) entry(id uint64) *refCount {
	if a.idx != nil {
		if i, ok := a.idx[id]; ok {
			return &a.refs[i]
		}
	} else {
		for i := range a.refs {
			if a.refs[i].id == id {
				return &a.refs[i]
			}
		}
	}
	a.refs = append(a.refs, refCount{id: id})
	if a.idx != nil {
		a.idx[id] = len(a.refs) - 1
	} else if len(a.refs) > refAccountScan {
		a.idx = make(map[uint64]int, 2*len(a.refs))
		for i := range a.refs {
			a.idx[a.refs[i].id] = i
		}
	}
	return &a.refs[len(a.refs)-1]
}

// took counts a reference to id that became a handle.
func (a *refAccount) took(id uint64) { a.entry(id).took++ }

// settle releases what the message carried and no decoder took, and gives
// the account back to the pool: nothing may use it after.
func (a *refAccount) settle(c *Conn) {
	if a == nil {
		return
	}
	a.untaken(c.postRelease)
	a.recycle()
}

// untaken calls release for each id with the references to it that the
// message carried and no decoder took.
func (a *refAccount) untaken(release func(id, n uint64)) {
	for _, rc := range a.refs {
		if left := rc.sent - min(rc.sent, rc.took); left > 0 {
			release(rc.id, left)
		}
	}
}

// recycle gives the account back to the pool.
func (a *refAccount) recycle() {
	if cap(a.refs) > len(a.inl) {
		// A large message's entries are not kept for the next one.
		a.refs, a.idx = nil, nil
	}
	a.refs = a.refs[:0]
	refAccountPool.Put(a)
}

// RawCopyable is a Copyable held by its registered name and its state as
// plain data, without its Go type. It travels exactly as the typed value
// does (tag 59002), so a program that lacks the type can still receive one,
// look inside and send one on: a relay passes Copyables on this way, and
// the gateway and the tether command show them this way. Send it as a
// *RawCopyable.
//
// A destination of type any receives a *RawCopyable for a Copyable whose
// name is not registered in this process, and for every Copyable in the
// result of a call made with WithRawCopyables (or one a relay forwards).
type RawCopyable struct {
	Name  string // the name the type was registered under
	State any    // the type's fields as plain data, as an any receives them
}

func isTetherTag(tag uint64) bool { return tag >= tagSenderRef && tag <= tagCacheable }

// undo releases every handle this decoder made; the value is being dropped.
func (d *decoder) undo() {
	for _, r := range d.imported {
		r.Release()
	}
	d.imported = d.imported[:0]
}

func typeErr(h cborx.Head, t reflect.Type) error {
	if h.Major == cborx.MajorTag {
		switch h.Arg {
		case tagCacheable:
			return fmt.Errorf("a model (Cacheable) cannot be decoded into %v: receive it into a mirror (**cache.Mirror[K, V] or **cache.ValueMirror[T])", t)
		case tagSenderRef, tagReceiverRef:
			return fmt.Errorf("a reference cannot be decoded into %v: receive it into *broker.Ref, *remote.Ref, any, or the object's own pointer type when it comes home", t)
		case tagError:
			return fmt.Errorf("an error value cannot be decoded into %v: receive it into error or any", t)
		}
	}
	return fmt.Errorf("cannot decode %s into %v", h.TypeName(), t)
}

// nested decodes into a value inside another. Its depth bound is on Go
// values, pointers included, and only stops a type that refers to itself
// without containers (type P *P): the CBOR's own nesting was bounded by
// Validate, and counting pointers against that bound would refuse values
// the sender was right to send.
func (d *decoder) nested(v reflect.Value, ti *typeInfo) error {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxValueDepth {
		return cborx.ErrLimit
	}
	return d.value(v, ti)
}

// value decodes the next item into v (settable), whose type ti describes.
// A null leaves v at its zero value; Tether's tags are handled here for
// the types that do not read them themselves.
func (d *decoder) value(v reflect.Value, ti *typeInfo) error {
	h, err := d.r.PeekHead()
	if err != nil {
		return err
	}
	if h.IsNull() {
		d.r.ReadNull()
		v.SetZero()
		return nil
	}
	if h.Major == cborx.MajorTag && ti.kind != kInterface && isTetherTag(h.Arg) {
		return d.tetherTagged(v, ti, h)
	}
	return d.byKind(v, ti, h)
}

// byKind decodes the item whose head h was peeked with the function for
// ti's kind. The switch calls each directly rather than through a table of
// functions: escape analysis cannot follow an indirect call, and through
// one the decoder (which callers keep on the stack) and every value
// decoded into would escape to the heap.
func (d *decoder) byKind(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	switch ti.kind {
	case kPure:
		return d.pure(v, ti, h)
	case kInterface:
		return interfaceDecoder(d, v, ti, h)
	case kRef, kObject:
		return d.reference(v, ti, h)
	case kCacheable:
		return d.cacheable(v, ti, h)
	case kCborTag:
		return cborTagDecoder(d, v, ti, h)
	case kPtr:
		return ptrDecoder(d, v, ti, h)
	case kCopyable:
		return copyableDecoder(d, v, ti, h)
	case kStruct:
		return structDecoder(d, v, ti, h)
	case kSlice:
		return sliceDecoder(d, v, ti, h)
	case kArray:
		return arrayDecoder(d, v, ti, h)
	case kMap:
		return d.mapValue(v, ti, h)
	case kObjectValue:
		return objectValueDecoder(d, v, ti, h)
	}
	return typeErr(h, ti.t) // kOpaque: a *RawCopyable is only ever sent
}

// pure decodes plain data: the scalars directly, anything else through
// fxamacker.
func (d *decoder) pure(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	switch ti.prim {
	case primBool:
		return boolDecoder(d, v, ti, h)
	case primInt:
		return intDecoder(d, v, ti, h)
	case primUint:
		return uintDecoder(d, v, ti, h)
	case primFloat32, primFloat64:
		return floatDecoder(d, v, ti, h)
	case primString:
		return stringDecoder(d, v, ti, h)
	case primBytes:
		return bytesDecoder(d, v, ti, h)
	}
	return fxDecoder(d, v, ti, h)
}

// tetherTagged decodes one of Tether's tagged values into v, whose type is
// not an interface: an error value into an error type; a reference, model
// or anything under a pointer by the type's own function; a Copyable into
// its type (or a plain struct, which then refuses it by name).
func (d *decoder) tetherTagged(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	switch {
	case h.Arg == tagError:
		return d.errorInto(v, ti)
	case ti.kind.readsTetherTags():
		return d.byKind(v, ti, h)
	case h.Arg == tagCopyable && ti.kind.takesCopyable():
		return d.copyable(v, ti)
	}
	return typeErr(h, ti.t)
}

// readsTetherTags reports whether the decoder of a type of kind k reads
// Tether's tags itself: references, models, cbor.Tag (which refuses them)
// and pointers (whose element decides).
func (k kind) readsTetherTags() bool {
	switch k {
	case kRef, kObject, kCacheable, kCborTag, kPtr:
		return true
	}
	return false
}

// takesCopyable reports whether a tagged Copyable may be decoded into a
// type of kind k: its registered type, or a plain or walked type that
// copyable then checks is the registered one.
func (k kind) takesCopyable() bool {
	return k == kCopyable || k == kPure || k == kStruct
}

// interfaceDecoder decodes the item as an any receives it and stores it
// if it implements the interface.
func interfaceDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	x, err := d.generic()
	if err != nil {
		return err
	}
	return assign(v, ti.t, x, h)
}

// cborTagDecoder decodes a tag other than Tether's into a cbor.Tag.
func cborTagDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorTag {
		return typeErr(h, ti.t)
	}
	if isTetherTag(h.Arg) {
		return fmt.Errorf("cannot decode a Tether value (tag %d) into cbor.Tag", h.Arg)
	}
	d.r.ReadHead()
	content, err := d.nestedGeneric()
	if err != nil {
		return err
	}
	v.Set(reflect.ValueOf(cbor.Tag{Number: h.Arg, Content: content}))
	return nil
}

// ptrDecoder decodes into a new value and points v at it.
func ptrDecoder(d *decoder, v reflect.Value, ti *typeInfo, _ cborx.Head) error {
	nv := reflect.New(ti.t.Elem())
	if err := d.nested(nv.Elem(), ti.elem); err != nil {
		return err
	}
	v.Set(nv)
	return nil
}

// copyableDecoder reads untagged data for a Copyable parameter (from a
// JSON gateway, say) as the type's own fields.
func copyableDecoder(d *decoder, v reflect.Value, ti *typeInfo, _ cborx.Head) error {
	return d.value(v, ti.state)
}

// sliceDecoder decodes an array into a new slice of its length.
func sliceDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	n, err := d.r.ReadArray()
	if err != nil {
		return typeErr(h, ti.t)
	}
	v.Set(reflect.MakeSlice(ti.t, n, n))
	return d.elements(v, ti, n)
}

// arrayDecoder decodes an array into a Go array: extra elements are
// skipped, missing ones left zero.
func arrayDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	n, err := d.r.ReadArray()
	if err != nil {
		return typeErr(h, ti.t)
	}
	if err := d.elements(v, ti, n); err != nil {
		return err
	}
	for i := n; i < v.Len(); i++ {
		v.Index(i).SetZero()
	}
	return nil
}

// elements decodes the n elements of an array into v's, skipping those
// beyond v's length.
func (d *decoder) elements(v reflect.Value, ti *typeInfo, n int) error {
	for i := 0; i < n; i++ {
		if i >= v.Len() {
			if err := d.r.Skip(); err != nil {
				return err
			}
			continue
		}
		if err := d.nested(v.Index(i), ti.elem); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return nil
}

// objectValueDecoder refuses a Referenceable held by value.
func objectValueDecoder(_ *decoder, _ reflect.Value, ti *typeInfo, _ cborx.Head) error {
	return fmt.Errorf("%v is Referenceable: decode a reference into *%v or *broker.Ref", ti.t, ti.t)
}

// assign stores a generically decoded x into the interface-typed v. A
// reference into an interface that x does not implement becomes the
// interface's registered stub over it (typed references): any and error
// take every value they took before, since x always implements them.
func assign(v reflect.Value, t reflect.Type, x any, h cborx.Head) error {
	if x == nil {
		v.SetZero()
		return nil
	}
	xv := reflect.ValueOf(x)
	if !xv.Type().AssignableTo(t) {
		return assignStub(v, t, x, h)
	}
	v.Set(xv)
	return nil
}

// assignStub stores in v, of interface type t, the stub of t over the
// reference x (or the object of this process it stands for, when that
// implements t); a value that is not a reference is refused.
func assignStub(v reflect.Value, t reflect.Type, x any, h cborx.Head) error {
	if _, isCaller := x.(remoteable.Caller); !isCaller {
		if h.Major == cborx.MajorTag && (h.Arg == tagReceiverRef || h.Arg == tagSenderRef || h.Arg == tagCacheable) {
			return fmt.Errorf("%w: the reference came home as this process's own %T, which does not implement %v", remoteable.ErrNotCaller, x, t)
		}
		return fmt.Errorf("cannot decode %s (%T) into %v", h.TypeName(), x, t)
	}
	sv, err := typereg.Convert(t, x)
	if err != nil {
		// The decoder's undo releases the reference. The error is quoted
		// inside the call's own (ErrBadArguments, ErrBadReply): once is
		// enough for its "tether: ".
		return inner{err}
	}
	v.Set(sv)
	return nil
}

// cacheable decodes a Cacheable into a mirror type (the mirror v already
// holds, or a new one, attached later by runAttach) or, when the model is this process's own, into the
// model's type.
func (d *decoder) cacheable(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorTag || h.Arg != tagCacheable {
		return fmt.Errorf("expected a Cacheable for %v, found %s", ti.t, h.TypeName())
	}
	x, err := d.generic()
	if err != nil {
		return err
	}
	if r, ok := x.(*Ref); ok {
		if !ti.mirror {
			return fmt.Errorf("a remote model cannot be decoded into %v: use a mirror (*cache.Mirror)", ti.t)
		}
		m := v // a mirror made with options (cache.NewMirror) is attached in place
		if m.IsNil() {
			m = reflect.New(ti.t.Elem())
			v.Set(m)
		}
		d.attach = append(d.attach, attachTask{m: m.Interface().(remoteable.CacheMirror), feed: r})
		return nil
	}
	xv := reflect.ValueOf(x)
	if !xv.Type().AssignableTo(ti.t) {
		return fmt.Errorf("the model came home: it is this process's own %T, which is not %v; "+
			"declare the parameter (or reply) as %T or any to receive it", x, ti.t, x)
	}
	v.Set(xv)
	return nil
}

// reference decodes a reference into a *Ref or a pointer to a Referenceable.
func (d *decoder) reference(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorTag || (h.Arg != tagSenderRef && h.Arg != tagReceiverRef && h.Arg != tagCacheable) {
		return fmt.Errorf("expected a reference for %v, found %s", ti.t, h.TypeName())
	}
	x, err := d.generic()
	if err != nil {
		return err
	}
	if ti.kind == kRef {
		r, ok := x.(*Ref)
		if !ok {
			r = localRef(x)
		}
		v.Set(reflect.ValueOf(r))
		return nil
	}
	xv := reflect.ValueOf(x)
	if !xv.Type().AssignableTo(ti.t) {
		if _, ok := x.(*Ref); ok {
			return fmt.Errorf("a remote reference cannot be decoded into %v: use *broker.Ref", ti.t)
		}
		return fmt.Errorf("the reference is to a %T, not %v", x, ti.t)
	}
	v.Set(xv)
	return nil
}

// copyable decodes a tagged Copyable into v, whose type must be the
// registered one.
func (d *decoder) copyable(v reflect.Value, ti *typeInfo) error {
	x, err := d.generic()
	if err != nil {
		return err
	}
	xv := reflect.ValueOf(x)
	if o, ok := x.(*RawCopyable); ok {
		return fmt.Errorf("%w: Copyable %q is not registered here", ErrUnknownType, o.Name)
	}
	if xv.Type() != ti.t {
		name, _ := typereg.CopyableName(xv.Type())
		if ti.name == "" {
			return fmt.Errorf("cannot decode Copyable %q (%v here) into %v, which is not a registered Copyable", name, xv.Type(), ti.t)
		}
		return fmt.Errorf("cannot decode Copyable %q (%v here) into %v, which is registered as %q", name, xv.Type(), ti.t, ti.name)
	}
	v.Set(xv)
	return nil
}

// errorInto decodes an error value (tag 59003) into v, whose type is not
// an interface: *RemoteError, or an error type registered with
// remoteable.RegisterError under the error's name (the registered value,
// as errors.As finds it in the remote error).
func (d *decoder) errorInto(v reflect.Value, ti *typeInfo) error {
	x, err := d.generic()
	if err != nil {
		return err
	}
	re := x.(*RemoteError)
	if reflect.TypeOf(re).AssignableTo(ti.t) {
		v.Set(reflect.ValueOf(re))
		return nil
	}
	if ti.t.Implements(errorType) {
		target := reflect.New(ti.t)
		if errors.As(re, target.Interface()) {
			v.Set(target.Elem())
			return nil
		}
	}
	return fmt.Errorf("an error (%s: %q) cannot be decoded into %v: take it as error (or any), or register %v on both sides with remoteable.RegisterError under the error's name",
		re.Name, re.Message, ti.t, ti.t)
}

func (d *decoder) mapValue(v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorMap {
		return typeErr(h, ti.t)
	}
	d.r.ReadHead()
	n := int(h.Arg)
	m := reflect.MakeMapWithSize(ti.t, n)
	kt, et := ti.t.Key(), ti.t.Elem()
	for i := 0; i < n; i++ {
		k := reflect.New(kt).Elem()
		if err := d.nested(k, ti.key); err != nil {
			return fmt.Errorf("map key: %w", err)
		}
		if !hashable(k) {
			return fmt.Errorf("map key %v cannot be hashed", k)
		}
		if m.MapIndex(k).IsValid() {
			return fmt.Errorf("duplicate map key %v", k)
		}
		e := reflect.New(et).Elem()
		if err := d.nested(e, ti.elem); err != nil {
			return fmt.Errorf("[%v]: %w", k, err)
		}
		m.SetMapIndex(k, e)
	}
	v.Set(m)
	return nil
}

// structArrayDecoder decodes an array into a toarray struct, element i
// into field i; extra elements are skipped.
func structArrayDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	n, err := d.r.ReadArray()
	if err != nil {
		return typeErr(h, ti.t)
	}
	for i := 0; i < n; i++ {
		if i >= len(ti.fields) {
			if err := d.r.Skip(); err != nil {
				return err
			}
			continue
		}
		if err := d.field(v, &ti.fields[i]); err != nil {
			return err
		}
	}
	return nil
}

// structDecoder decodes a map into a struct by the rules in fit.go, or an
// array into a toarray struct.
func structDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if ti.toArray {
		return structArrayDecoder(d, v, ti, h)
	}
	if h.Major != cborx.MajorMap {
		return typeErr(h, ti.t)
	}
	d.r.ReadHead()
	seen := make([]bool, len(ti.fields))
	var m fieldMatch
	for i := uint64(0); i < h.Arg; i++ {
		key, err := readStructKey(&d.r, ti)
		if err != nil {
			return err
		}
		if key.idx < 0 {
			m.miss(key)
			if err := d.r.Skip(); err != nil { // unknown field: ignored
				return err
			}
			continue
		}
		m.matched++
		if seen[key.idx] {
			return fmt.Errorf("duplicate field %s", ti.fields[key.idx].name)
		}
		seen[key.idx] = true
		if err := d.field(v, &ti.fields[key.idx]); err != nil {
			return err
		}
	}
	return m.check(ti, h.Arg)
}

// field decodes the next item into field f of struct v.
func (d *decoder) field(v reflect.Value, f *field) error {
	fv, err := fieldForSet(v, f.index)
	if err == nil {
		err = d.nested(fv, f.info)
	}
	if err != nil {
		return fmt.Errorf("field %s: %w", f.name, err)
	}
	return nil
}

// fieldForSet follows index through embedded structs, allocating nil
// embedded pointers on the way. Like encoding/json, it cannot allocate an
// embedded pointer to an unexported struct type: that is an error.
func fieldForSet(v reflect.Value, index []int) (reflect.Value, error) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return reflect.Value{}, fmt.Errorf("cannot set embedded pointer to unexported struct %v", v.Type().Elem())
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, nil
}

// boolDecoder decodes a bool; it and the next few decode the scalars the
// codec decodes itself, without fxamacker.
func boolDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorSimple || (h.AI != cborx.SimpleTrue && h.AI != cborx.SimpleFalse) {
		return typeErr(h, ti.t)
	}
	d.r.ReadHead()
	v.SetBool(h.AI == cborx.SimpleTrue)
	return nil
}

// intDecoder decodes an integer into a signed integer type it fits.
func intDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorUint && h.Major != cborx.MajorNeg {
		return typeErr(h, ti.t)
	}
	x, err := d.r.ReadInt()
	if err != nil || v.OverflowInt(x) {
		return fmt.Errorf("integer overflows %v", ti.t)
	}
	v.SetInt(x)
	return nil
}

// uintDecoder decodes a non-negative integer into an unsigned type it fits.
func uintDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorUint {
		if h.Major == cborx.MajorNeg {
			return fmt.Errorf("negative integer cannot be decoded into %v", ti.t)
		}
		return typeErr(h, ti.t)
	}
	d.r.ReadHead()
	if v.OverflowUint(h.Arg) {
		return fmt.Errorf("integer %d overflows %v", h.Arg, ti.t)
	}
	v.SetUint(h.Arg)
	return nil
}

// floatDecoder decodes a float or an integer into a float type; a finite
// value too large for a float32 is refused.
func floatDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	var f float64
	switch h.Major {
	case cborx.MajorUint:
		f = float64(h.Arg)
	case cborx.MajorNeg:
		f = -1 - float64(h.Arg)
	default:
		var ok bool
		if f, ok = h.Float(); !ok {
			return typeErr(h, ti.t)
		}
	}
	d.r.ReadHead()
	if ti.prim == primFloat32 && !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
		return fmt.Errorf("%g overflows float32", f)
	}
	v.SetFloat(f)
	return nil
}

// stringDecoder decodes a text string.
func stringDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorText {
		return typeErr(h, ti.t)
	}
	s, err := d.r.ReadText()
	if err != nil {
		return err
	}
	v.SetString(d.text(s))
	return nil
}

// bytesDecoder decodes a byte string into a byte slice.
func bytesDecoder(d *decoder, v reflect.Value, ti *typeInfo, h cborx.Head) error {
	if h.Major != cborx.MajorBytes {
		return typeErr(h, ti.t)
	}
	b, err := d.r.ReadBytes()
	if err != nil {
		return err
	}
	// Like encoding/json with slices, a destination that already has
	// room is reused rather than reallocated; one that has none gets a
	// slice of the body when alias allows, a copy otherwise.
	dst := v.Bytes()
	if dst == nil || cap(dst) < len(b) {
		if d.alias(b) {
			v.SetBytes(b[:len(b):len(b)])
			return nil
		}
		dst = make([]byte, 0, len(b))
	}
	v.SetBytes(append(dst[:0], b...))
	return nil
}

// aliasMin is the smallest byte or text string that decodes to a slice of
// an owned body rather than to a copy.
const aliasMin = 4 << 10

// alias reports whether b, a string read from the decoder's body, may be
// handed out as a slice of the body instead of a copy, and if so marks the
// body kept, so that its buffer is never reused: the body is owned (a
// buffer of its own, which nothing writes to once read), and b takes at
// least an eighth of it, so that a value kept alone pins at most eight
// times its size. Below that, or for a body that is reused (the main
// stream's), copying is the price of not pinning or not being overwritten.
func (d *decoder) alias(b []byte) bool {
	if d.owned == nil || len(b) < aliasMin || 8*len(b) < d.r.Offset()+d.r.Len() {
		return false
	}
	d.owned.kept = true
	return true
}

// text returns s, a text string read from the decoder's body, as a Go
// string: the body's own bytes when alias allows (the body is never
// written to again, and a []byte aliasing it covers other bytes, with its
// capacity cut to its length), a copy otherwise.
func (d *decoder) text(s []byte) string {
	if len(s) > 0 && d.alias(s) {
		return unsafe.String(unsafe.SliceData(s), len(s))
	}
	return string(s)
}

// fxDecoder decodes any other plain data through fxamacker, after checking
// that its maps fit the structs they stand for.
func fxDecoder(d *decoder, v reflect.Value, ti *typeInfo, _ cborx.Head) error {
	x := v.Addr().Interface()
	vd, self := x.(validatedDecoder)
	if self && !ti.fit {
		// It finds the item's end itself (see the seam).
		n, err := vd.DecodeValidated(cborx.Trusted{}, d.r.Rest())
		if err != nil {
			return err
		}
		return d.r.Advance(n)
	}
	item, err := d.item()
	if err != nil {
		return err
	}
	if ti.fit {
		// Before fxamacker, which would leave a struct that no key
		// names at its zero value.
		r := cborx.NewReader(item)
		if err := fitCheck(&r, ti); err != nil {
			return err
		}
	}
	if self {
		n, err := vd.DecodeValidated(cborx.Trusted{}, item)
		if err == nil && n != len(item) {
			err = fmt.Errorf("%w: %d bytes after the item", ErrBadArguments, len(item)-n)
		}
		return err
	}
	if err := fxDec.Unmarshal(item, x); err != nil {
		return fxError(err, ti)
	}
	return nil
}

// fxError says which field (or type) fxamacker could not decode into.
func fxError(err error, ti *typeInfo) error {
	var te *cbor.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	if te.StructFieldName != "" {
		return fmt.Errorf("field %s: cannot decode %s into %s", te.StructFieldName, te.CBORType, te.GoType)
	}
	return fmt.Errorf("cannot decode %s into %v", te.CBORType, ti.t)
}

// item consumes the next item and returns its bytes.
func (d *decoder) item() ([]byte, error) {
	start := d.r.Offset()
	if err := d.r.Skip(); err != nil {
		return nil, err
	}
	return d.r.Bytes(start), nil
}

// generic decodes the next item into the Go value an `any` receives:
// int64 (uint64 above MaxInt64), float64, string, []byte, bool, nil, []any,
// map[string]any (map[any]any when a key is not text), time.Time and
// big.Int for their standard tags, *Ref for a remote reference, the original
// object for a reference coming home, the registered Go type for a Copyable,
// and error for an error value. Other tags come back as cbor.Tag.
func (d *decoder) generic() (any, error) {
	h, err := d.r.PeekHead()
	if err != nil {
		return nil, err
	}
	switch h.Major {
	case cborx.MajorUint:
		d.r.ReadHead()
		if h.Arg > math.MaxInt64 {
			return h.Arg, nil
		}
		return int64(h.Arg), nil
	case cborx.MajorNeg:
		return d.r.ReadInt()
	case cborx.MajorBytes:
		b, err := d.r.ReadBytes()
		if err != nil || d.alias(b) {
			return b[:len(b):len(b)], err
		}
		return append(make([]byte, 0, len(b)), b...), nil
	case cborx.MajorText:
		s, err := d.r.ReadText()
		return d.text(s), err
	case cborx.MajorArray:
		return d.genericArray()
	case cborx.MajorMap:
		return d.genericMap(h)
	case cborx.MajorTag:
		return d.genericTag(h)
	}
	return d.genericSimple(h)
}

// genericArray decodes an array into []any.
func (d *decoder) genericArray() (any, error) {
	n, err := d.r.ReadArray()
	if err != nil {
		return nil, err
	}
	out := make([]any, n)
	for i := range out {
		if out[i], err = d.nestedGeneric(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// genericTag decodes a tagged item: Tether's tags by the codec, any other
// (time, big numbers, ...) by fxamacker.
func (d *decoder) genericTag(h cborx.Head) (any, error) {
	if isTetherTag(h.Arg) {
		return d.genericTagged(h)
	}
	item, err := d.item()
	if err != nil {
		return nil, err
	}
	var x any
	if err := fxDec.Unmarshal(item, &x); err != nil {
		return nil, err
	}
	return x, nil
}

// genericSimple decodes a simple value: a bool, null (undefined reads as
// null) or a float.
func (d *decoder) genericSimple(h cborx.Head) (any, error) {
	d.r.ReadHead()
	switch h.AI {
	case cborx.SimpleFalse:
		return false, nil
	case cborx.SimpleTrue:
		return true, nil
	case cborx.SimpleNull, cborx.SimpleUndefined:
		return nil, nil
	}
	if f, ok := h.Float(); ok {
		return f, nil
	}
	return nil, fmt.Errorf("unsupported simple value %d", h.Arg)
}

func (d *decoder) nestedGeneric() (any, error) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > decodeLimits.MaxDepth {
		return nil, cborx.ErrLimit
	}
	return d.generic()
}

// genericMap decodes a map into map[string]any when every key is text,
// else into map[any]any.
func (d *decoder) genericMap(h cborx.Head) (any, error) {
	d.r.ReadHead()
	n := int(h.Arg)
	textKeys, err := allTextKeys(d.r, n)
	if err != nil {
		return nil, err
	}
	if textKeys {
		return d.genericTextMap(n)
	}
	return d.genericAnyMap(n)
}

// allTextKeys looks ahead (r is a copy) at the n pairs of a map and
// reports whether all its keys are text.
func allTextKeys(r cborx.Reader, n int) (bool, error) {
	for i := 0; i < n; i++ {
		kh, err := r.PeekHead()
		if err != nil {
			return false, err
		}
		if kh.Major != cborx.MajorText {
			return false, nil
		}
		if err := r.Skip(); err != nil {
			return false, err
		}
		if err := r.Skip(); err != nil {
			return false, err
		}
	}
	return true, nil
}

// genericTextMap decodes n pairs with text keys into map[string]any.
func (d *decoder) genericTextMap(n int) (any, error) {
	m := make(map[string]any, n)
	for i := 0; i < n; i++ {
		k, _ := d.r.ReadText()
		if _, dup := m[string(k)]; dup {
			return nil, fmt.Errorf("duplicate map key %q", k)
		}
		v, err := d.nestedGeneric()
		if err != nil {
			return nil, err
		}
		m[string(k)] = v
	}
	return m, nil
}

// genericAnyMap decodes n pairs into map[any]any; a byte-string key
// becomes a string, and a key that cannot be hashed is refused.
func (d *decoder) genericAnyMap(n int) (any, error) {
	m := make(map[any]any, n)
	for i := 0; i < n; i++ {
		k, err := d.nestedGeneric()
		if err != nil {
			return nil, err
		}
		if kk, ok := k.([]byte); ok {
			k = string(kk)
		} else if k != nil && !hashable(reflect.ValueOf(k)) {
			return nil, fmt.Errorf("map key of type %T cannot be hashed", k)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate map key %v", k)
		}
		v, err := d.nestedGeneric()
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// genericTagged decodes one of Tether's tagged values.
func (d *decoder) genericTagged(h cborx.Head) (any, error) {
	d.r.ReadHead()
	switch h.Arg {
	case tagSenderRef, tagReceiverRef:
		return d.genericRef(h.Arg)
	case tagCopyable:
		return d.genericCopyable()
	case tagError:
		return d.wireError()
	case tagCacheable:
		return d.genericCacheable()
	}
	return nil, fmt.Errorf("%w: tag %d", ErrUnknownType, h.Arg)
}

// genericRef decodes a reference's id: a handle for an object of the
// sender (tag 59000), or the local object a reference coming home names
// (tag 59001).
func (d *decoder) genericRef(tag uint64) (any, error) {
	id, err := d.r.ReadUint()
	if err != nil {
		return nil, fmt.Errorf("reference id: %w", err)
	}
	if d.c == nil {
		return nil, errors.New("a reference cannot be decoded outside a connection")
	}
	if tag == tagSenderRef {
		return d.senderRef(id), nil
	}
	obj, ok := d.c.homecoming(id)
	if !ok {
		return nil, fmt.Errorf("%w: id %d", ErrUnknownReference, id)
	}
	if r, isRef := obj.(*Ref); isRef && r.c != nil {
		d.imported = append(d.imported, r) // a proxy's fresh handle: undo releases it too
	}
	return obj, nil
}

// senderRef imports the sender's object id as a handle, accounted for in
// the message's references (the root, id 0, is not counted).
func (d *decoder) senderRef(id uint64) *Ref {
	r := d.c.importRef(id)
	if id != 0 {
		d.imported = append(d.imported, r)
		if d.acct != nil {
			d.acct.took(id)
		}
	}
	return r
}

// genericCopyable decodes [name, state]: the registered type's value, or a
// *RawCopyable when the name is not registered here or the decoder keeps
// Copyables opaque.
func (d *decoder) genericCopyable() (any, error) {
	n, err := d.r.ReadArray()
	if err != nil || n != 2 {
		return nil, errors.New("malformed Copyable: want [name, state]")
	}
	name, err := d.r.ReadText()
	if err != nil {
		return nil, fmt.Errorf("malformed Copyable name: %w", err)
	}
	t, ok := typereg.CopyableType(string(name))
	if d.opaque || !ok {
		st, err := d.nestedGeneric()
		if err != nil {
			return nil, err
		}
		return &RawCopyable{Name: string(name), State: st}, nil
	}
	return d.registeredCopyable(name, t)
}

// registeredCopyable decodes the state of a Copyable registered here as t.
// Its name stays bytes (in the frame) unless an error needs it.
func (d *decoder) registeredCopyable(name []byte, t reflect.Type) (any, error) {
	v := reflect.New(t).Elem()
	if err := d.nested(v, infoOf(t).state); err != nil {
		var nf *noFieldError
		if errors.As(err, &nf) && nf.t == t {
			// The name is registered to different types on the two
			// sides: decoding on would hand over a zero value.
			return nil, &copyableMismatchError{name: string(name), t: t, nf: nf}
		}
		return nil, &copyableError{name: string(name), err: err}
	}
	return v.Interface(), nil
}

// copyableError is a Copyable whose state did not decode. Its message
// starts with "Copyable", the protocol's name for the kind of value
// (docs/protocol.md), which is why it is a type rather than an errorf.
type copyableError struct {
	name string
	err  error
}

func (e *copyableError) Error() string { return "Copyable " + e.name + ": " + e.err.Error() }
func (e *copyableError) Unwrap() error { return e.err }

// copyableMismatchError is a Copyable whose state shares no field with the
// type registered under its name here: the two sides registered different
// types under one name.
type copyableMismatchError struct {
	name string
	t    reflect.Type
	nf   *noFieldError
}

func (e *copyableMismatchError) Error() string {
	return fmt.Sprintf("Copyable %q is registered here as %v (fields %s), but the value sent under that name is %s, which shares no field with it: "+
		"the two sides registered different types under %q; register the same type on both",
		e.name, e.t, listNames(e.nf.fields), e.nf.sent(), e.name)
}

// genericCacheable decodes a model: a handle to a remote model's feed, or
// the model itself when it comes home.
func (d *decoder) genericCacheable() (any, error) {
	h, err := d.r.PeekHead()
	if err != nil || h.Major != cborx.MajorTag || (h.Arg != tagSenderRef && h.Arg != tagReceiverRef) {
		return nil, errors.New("malformed Cacheable: want a reference to its feed")
	}
	x, err := d.generic()
	if err != nil {
		return nil, err
	}
	switch o := x.(type) {
	case *Ref:
		o.cacheable = true
		return o, nil
	case interface{ CacheModel() any }:
		// A model coming home (its feed, or a subscription to it that
		// a mirror of it went home as): the model itself.
		if m := o.CacheModel(); m != nil {
			return m, nil
		}
		return nil, fmt.Errorf("%w: the model behind this feed is gone", ErrUnknownReference)
	}
	return nil, fmt.Errorf("%w: the reference is not to a model's feed", ErrUnknownReference)
}

// wireError reads [name, message, traceback|null, detail|null, code]; the
// last three may be missing, and elements after them are skipped.
func (d *decoder) wireError() (*RemoteError, error) {
	n, err := d.r.ReadArray()
	if err != nil || n < 2 {
		return nil, errors.New("malformed error: want [name, message, ...]")
	}
	re, err := d.errorHead(n)
	if err != nil {
		return nil, err
	}
	if err := d.errorTail(re, n); err != nil {
		return nil, err
	}
	return re, nil
}

// errorTail reads what follows an error's traceback in its n-element
// array: the detail (n > 3), the code (n > 4) and what a newer peer added;
// and finds the error registered under its name.
func (d *decoder) errorTail(re *RemoteError, n int) error {
	entry, _ := typereg.ErrorByName(re.Name)
	if entry != nil && entry.Value != nil {
		re.err = entry.Value
	}
	if n > 3 && !d.r.ReadNull() {
		if err := d.errorDetail(re, entry); err != nil {
			return err
		}
	}
	if n > 4 {
		if err := d.errorCode(re); err != nil {
			return err
		}
	}
	return d.skip(n - 5) // what a newer peer added
}

// skip skips the next n items (none when n <= 0).
func (d *decoder) skip(n int) error {
	for i := 0; i < n; i++ {
		if err := d.r.Skip(); err != nil {
			return err
		}
	}
	return nil
}

// errorHead reads an error's name, message and (n > 2) traceback.
func (d *decoder) errorHead(n int) (*RemoteError, error) {
	name, err1 := d.r.ReadText()
	msg, err2 := d.r.ReadText()
	if err1 != nil || err2 != nil {
		return nil, errors.New("malformed error: name and message must be text")
	}
	re := &RemoteError{Name: string(name), Message: string(msg)}
	if n > 2 && !d.r.ReadNull() {
		tb, err := d.r.ReadText()
		if err != nil {
			return nil, errors.New("malformed error: traceback must be text")
		}
		re.Traceback = string(tb)
	}
	return re, nil
}

// errorDetail reads a (non-null) detail: into the Go type of entry, the
// error registered under the error's name (if any), and as bytes to pass on.
func (d *decoder) errorDetail(re *RemoteError, entry *typereg.ErrorEntry) error {
	start := d.r.Offset()
	if entry != nil && entry.Type != nil {
		v := reflect.New(entry.Type).Elem()
		if err := d.nested(v, infoOf(entry.Type)); err != nil {
			return fmt.Errorf("error %s: %w", re.Name, err)
		}
		re.err, _ = v.Interface().(error)
	} else if err := d.r.Skip(); err != nil {
		return err
	}
	re.detail = append([]byte(nil), d.r.Bytes(start)...)
	return nil
}

// errorCode reads an error's code; one this side does not know yet is
// Unknown.
func (d *decoder) errorCode(re *RemoteError) error {
	c, err := d.r.ReadUint()
	if err != nil {
		return errors.New("malformed error: code must be an unsigned integer")
	}
	if _, known := codeNames[Code(c)]; known && c <= 255 {
		re.code = Code(c)
	} else {
		re.code = Unknown // a code this side does not know yet
	}
	return nil
}

// hashable reports whether v can be a map key without panicking: unlike
// Type.Comparable, it looks inside interfaces for slices, maps and funcs.
func hashable(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.Kind() == reflect.Pointer || v.IsNil() {
			return true
		}
		return hashable(v.Elem())
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if !hashable(v.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if !hashable(v.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Slice, reflect.Map, reflect.Func:
		return false
	}
	return true
}
