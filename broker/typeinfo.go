package broker

import (
	"encoding"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fxamacker/cbor/v2"

	"github.com/tether-go/tether/internal/typereg"
	"github.com/tether-go/tether/remoteable"
)

// kind classifies a Go type by how the value codec treats it.
type kind uint8

const (
	kPure        kind = iota // plain data: a scalar fast path or fxamacker
	kRef                     // *Ref
	kObject                  // pointer to a Referenceable type: sent by reference
	kObjectValue             // Referenceable by value: an error to send
	kCopyable                // registered Copyable type
	kOpaque                  // a Copyable a relay passes on without knowing it
	kInterface               // decided per value by its dynamic type
	kCborTag                 // cbor.Tag: a CBOR tag around any content
	kCacheable               // an observable model (sent) or a mirror of one (received)
	kStub                    // a remoteable.Stub: sent as the Caller it wraps
	kPtr
	kStruct
	kSlice
	kArray
	kMap
)

// prim names the plain scalar kinds the codec encodes itself, without fxamacker.
type prim uint8

const (
	primNone prim = iota
	primBool
	primInt
	primUint
	primFloat32
	primFloat64
	primString
	primBytes
)

// typeInfo is everything the codec needs to know about one Go type. It is
// computed once per type (and per registration generation) and then shared.
type typeInfo struct {
	t       reflect.Type
	kind    kind
	prim    prim
	name    string    // kCopyable: the registered name
	state   *typeInfo // kCopyable: how the value's own fields encode
	elem    *typeInfo // kPtr, kSlice, kArray, kMap
	key     *typeInfo // kMap
	fields  []field   // kStruct
	byName  map[string]int
	toArray bool
	mirror  bool // kCacheable: a pointer type a Cacheable decodes into
	model   bool // kCacheable: the type is a Cacheable to send
	// fit marks a plain-data type (kPure) that holds a struct somewhere:
	// after fxamacker decodes one, fitCheck walks the item to refuse a map
	// that shares no field with its struct (see fitCheck). For such types
	// elem, key and fields are filled in too, though the codec itself does
	// not use them.
	fit     bool
	fitDone bool // fit has been worked out
	// asError marks a type that implements error and is sent as data
	// by its shape: a value of it whose static type was lost (an argument,
	// an element of an interface) travels as an error instead (tag 59003).
	asError bool
	// emptiness is how an omitempty field of the type decides it is
	// empty, as fxamacker decides it for plain structs (see isEmpty).
	emptiness emptiness
}

// emptiness classifies how an omitempty field decides it is empty.
type emptiness uint8

const (
	emptyByKind emptiness = iota // by the value's kind (see isEmpty)
	emptyNever                   // never: big.Int, and types that marshal themselves to CBOR
	emptyBinary                  // when its MarshalBinary returns no bytes
)

// fxEmptiness is the emptiness fxamacker gives its own types before it
// looks at the methods a type has: cbor.RawMessage, cbor.ByteString and
// cbor.SimpleValue marshal themselves but are empty by their kind (an
// empty slice, an empty string, 0), cbor.Tag, time.Time and big.Int are
// never empty.
var fxEmptiness = map[reflect.Type]emptiness{
	reflect.TypeFor[cbor.RawMessage]():  emptyByKind,
	reflect.TypeFor[cbor.ByteString]():  emptyByKind,
	reflect.TypeFor[cbor.SimpleValue](): emptyByKind,
	cborTagType:                         emptyNever,
	timeType:                            emptyNever,
	bigIntType:                          emptyNever,
}

// emptinessOf picks t's emptiness the way fxamacker's encoder does, which
// checks its own types, then cbor.Marshaler, then encoding.BinaryMarshaler.
func emptinessOf(t reflect.Type) emptiness {
	pt := reflect.PointerTo(t)
	if e, ok := fxEmptiness[t]; ok {
		return e
	}
	switch {
	case t.Kind() == reflect.Pointer || t.Kind() == reflect.Interface:
		return emptyByKind
	case pt.Implements(cborMarshaler):
		return emptyNever
	case pt.Implements(binMarshaler):
		return emptyBinary
	}
	return emptyByKind
}

// field is one encoded field of an impure struct.
type field struct {
	name      string
	index     []int
	info      *typeInfo
	omitEmpty bool
	intKey    bool
	key       int64
}

var (
	refType        = reflect.TypeFor[*Ref]()
	cborTagType    = reflect.TypeFor[cbor.Tag]()
	bigIntType     = reflect.TypeFor[big.Int]()
	opaqueType     = reflect.TypeFor[*RawCopyable]()
	errorType      = reflect.TypeFor[error]()
	cborMarshaler  = reflect.TypeFor[cbor.Marshaler]()
	cborUnmarshal  = reflect.TypeFor[cbor.Unmarshaler]()
	binMarshaler   = reflect.TypeFor[encoding.BinaryMarshaler]()
	binUnmarshaler = reflect.TypeFor[encoding.BinaryUnmarshaler]()
	cacheableType  = reflect.TypeFor[remoteable.Cacheable]()
	cacheMirror    = reflect.TypeFor[remoteable.CacheMirror]()
	cacheTypes     = reflect.TypeFor[remoteable.CacheTypes]()
)

type infoCache struct {
	gen   uint64
	infos sync.Map // reflect.Type -> *typeInfo
}

var (
	cacheRef atomic.Pointer[infoCache]
	buildMu  sync.Mutex
)

// infoOf returns the shared typeInfo for t.
func infoOf(t reflect.Type) *typeInfo {
	c := cacheRef.Load()
	if c == nil || c.gen != typereg.Generation() {
		c = resetCache()
	}
	if ti, ok := c.infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if ti, ok := c.infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	b := builder{cache: c, pure: map[reflect.Type]bool{}, building: map[reflect.Type]*typeInfo{}}
	ti := b.info(t)
	inProgress := map[*typeInfo]bool{}
	for _, bi := range b.building {
		workOutFit(bi, inProgress)
	}
	// Publish everything built in this pass only now that it is complete.
	for bt, bi := range b.building {
		c.infos.Store(bt, bi)
	}
	return ti
}

func resetCache() *infoCache {
	buildMu.Lock()
	defer buildMu.Unlock()
	gen := typereg.Generation()
	if c := cacheRef.Load(); c != nil && c.gen == gen {
		return c
	}
	c := &infoCache{gen: gen}
	cacheRef.Store(c)
	return c
}

type builder struct {
	cache    *infoCache
	pure     map[reflect.Type]bool
	building map[reflect.Type]*typeInfo
}

func implementsAny(t reflect.Type, ifaces ...reflect.Type) bool {
	pt := reflect.PointerTo(t)
	for _, i := range ifaces {
		if t.Implements(i) || pt.Implements(i) {
			return true
		}
	}
	return false
}

func isMarker(t reflect.Type) bool {
	return typereg.ReferenceableMarker != nil && t.Implements(typereg.ReferenceableMarker)
}

// exactKinds are the types special classifies by identity.
var exactKinds = map[reflect.Type]kind{refType: kRef, opaqueType: kOpaque, cborTagType: kCborTag}

// special classifies the types the walker must handle itself, or returns
// kPure when the type's own structure decides.
func special(t reflect.Type) kind {
	if k, ok := exactKinds[t]; ok {
		return k
	}
	switch {
	case t.Kind() == reflect.Interface:
		return kInterface
	case typereg.StubType != nil && t.Implements(typereg.StubType):
		// A typed stub is classified once here, so that sending one costs
		// no interface check per value.
		return kStub
	case t.Implements(cacheableType) || (t.Kind() == reflect.Pointer && t.Implements(cacheMirror)):
		return kCacheable
	case isMarker(t) && t.Kind() == reflect.Pointer:
		return kObject
	case isMarker(t) || (t.Kind() == reflect.Struct && isMarker(reflect.PointerTo(t))):
		return kObjectValue
	}
	if _, ok := typereg.CopyableName(t); ok {
		return kCopyable
	}
	return kPure
}

// isPure reports whether values of t can never hold anything but plain data.
// A type still being examined higher up the stack counts as pure: a cycle
// cannot add impurity of its own.
func (b *builder) isPure(t reflect.Type) bool {
	if p, ok := b.pure[t]; ok {
		return p
	}
	if special(t) != kPure {
		b.pure[t] = false
		return false
	}
	b.pure[t] = true
	p := b.isPureShape(t)
	b.pure[t] = p
	return p
}

func (b *builder) info(t reflect.Type) *typeInfo {
	if ti, ok := b.cache.infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	if ti, ok := b.building[t]; ok {
		return ti
	}
	ti := &typeInfo{t: t}
	b.building[t] = ti
	b.fill(ti, false)
	ti.emptiness = emptinessOf(t)
	switch ti.kind {
	case kPure, kStruct, kPtr, kSlice, kArray, kMap:
		ti.asError = t.Implements(errorType)
	}
	return ti
}

// fill works out ti. asState ignores a
// Copyable registration, for the info that encodes a Copyable's own fields.
func (b *builder) fill(ti *typeInfo, asState bool) {
	k := special(ti.t)
	if asState && k == kCopyable {
		k = kPure
	}
	switch k {
	case kCopyable:
		ti.kind = kCopyable
		ti.name, _ = typereg.CopyableName(ti.t)
		st := &typeInfo{t: ti.t}
		b.fill(st, true)
		ti.state = st
	case kCacheable:
		ti.kind = k
		ti.model = ti.t.Implements(cacheableType)
		ti.mirror = ti.t.Kind() == reflect.Pointer && ti.t.Implements(cacheMirror)
	case kPure:
		b.structural(ti)
	default:
		ti.kind = k
	}
}

// structural classifies a type no special rule claims by its structure:
// plain data for fxamacker (or a scalar fast path), or a container whose
// parts the walker follows because one of them is not plain.
func (b *builder) structural(ti *typeInfo) {
	t := ti.t
	if b.isPureShape(t) {
		ti.kind = kPure
		ti.prim = primOf(t)
		if ti.prim == primNone && !implementsAny(t, cborUnmarshal, binUnmarshaler) {
			b.shape(ti)
		}
		return
	}
	ti.kind = walkedKind(t.Kind())
	b.shape(ti)
}

// walkedKind is the walker's kind for a container type that is not plain
// data.
func walkedKind(k reflect.Kind) kind {
	switch k {
	case reflect.Pointer:
		return kPtr
	case reflect.Slice:
		return kSlice
	case reflect.Array:
		return kArray
	case reflect.Map:
		return kMap
	case reflect.Struct:
		return kStruct
	}
	return kPure
}

// shape fills in the element, key and field types of a container type:
// the walker follows them, and for a plain-data type fitCheck does (a
// struct's fields named as fxamacker names them).
func (b *builder) shape(ti *typeInfo) {
	t := ti.t
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		ti.elem = b.info(t.Elem())
	case reflect.Map:
		ti.key = b.info(t.Key())
		ti.elem = b.info(t.Elem())
	case reflect.Struct:
		b.structFields(ti)
	}
}

// workOutFit sets ti.fit: whether a value of ti's type, decoded by
// fxamacker, may hold a struct that fitCheck must look at. A type met again
// while it is being worked out (a cycle) adds nothing: a cycle through a
// struct is found at the struct itself.
func workOutFit(ti *typeInfo, inProgress map[*typeInfo]bool) bool {
	if ti == nil || inProgress[ti] {
		return false
	}
	if ti.fitDone {
		return ti.fit
	}
	inProgress[ti] = true
	defer delete(inProgress, ti)
	parts := workOutParts(ti, inProgress)
	ti.fit, ti.fitDone = needsFit(ti, parts), true
	return ti.fit
}

// workOutParts works out fit for every type ti refers to and reports
// whether one of its elements, keys or fields needs fitCheck.
func workOutParts(ti *typeInfo, inProgress map[*typeInfo]bool) bool {
	if ti.state != nil {
		workOutFit(ti.state, inProgress)
	}
	fit := false
	for i := range ti.fields {
		fit = workOutFit(ti.fields[i].info, inProgress) || fit
	}
	fit = workOutFit(ti.elem, inProgress) || fit
	fit = workOutFit(ti.key, inProgress) || fit
	return fit
}

// needsFit decides ti.fit given whether its parts need fitCheck. Only
// fxamacker's items are walked (the codec checks its own), and a toarray
// struct's fields go by position, not by name.
func needsFit(ti *typeInfo, parts bool) bool {
	if ti.kind != kPure || ti.prim != primNone || ti.toArray {
		return false
	}
	return parts || (ti.t.Kind() == reflect.Struct && len(ti.fields) > 0)
}

// isPureShape is isPure for a type whose own registration was already
// considered (a Copyable's state).
func (b *builder) isPureShape(t reflect.Type) bool {
	if implementsAny(t, cborMarshaler, cborUnmarshal) {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return b.isPure(t.Elem())
	case reflect.Map:
		return b.isPure(t.Key()) && b.isPure(t.Elem())
	case reflect.Struct:
		return b.pureFields(t)
	}
	return true
}

// pureFields reports whether every field of struct t that is encoded (an
// exported or embedded one) is plain data.
func (b *builder) pureFields(t reflect.Type) bool {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if (f.IsExported() || f.Anonymous) && !b.isPure(f.Type) {
			return false
		}
	}
	return true
}

// primOf picks the scalar fast path for t, if it has one. Types with their
// own marshalling methods go to fxamacker so that those methods are honoured.
func primOf(t reflect.Type) prim {
	if implementsAny(t, cborMarshaler, cborUnmarshal, binMarshaler, binUnmarshaler) {
		return primNone
	}
	switch t.Kind() {
	case reflect.Bool:
		return primBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return primInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return primUint
	case reflect.Float32:
		return primFloat32
	case reflect.Float64:
		return primFloat64
	case reflect.String:
		return primString
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implementsAny(t.Elem(), cborMarshaler, binMarshaler) {
			return primBytes
		}
	}
	return primNone
}

// structFields lists the encoded fields of an impure struct with the same
// rules fxamacker applies to plain structs: the name comes from the cbor
// tag, else the json tag, else the field name; "-" skips a field; omitempty
// and keyasint are honoured; embedded structs are flattened, the shallowest
// field of a name winning and equally deep ones cancelling out unless
// exactly one is tagged; a `_ struct{} `cbor:",toarray"“ field makes the
// struct an array in field order.
func (b *builder) structFields(ti *typeInfo) {
	w := fieldWalker{ti: ti, visited: map[reflect.Type]bool{}}
	w.walk(ti.t, nil, 0)
	keep := dominantFields(w.cands)
	ti.byName = map[string]int{}
	for _, c := range w.cands {
		if !keep[c.order] {
			continue
		}
		c.info = b.info(ti.t.FieldByIndex(c.index).Type)
		ti.byName[c.name] = len(ti.fields)
		ti.fields = append(ti.fields, c.field)
	}
}

// fieldCand is a field structFields may keep, with what decides between
// fields of the same name.
type fieldCand struct {
	field
	depth  int  // how many embedded structs deep it is
	tagged bool // its name comes from a tag
	order  int  // its place among all candidates, in field order
}

// fieldWalker collects the candidate fields of a struct, flattening
// embedded structs depth first so that candidates come in field order.
type fieldWalker struct {
	ti      *typeInfo
	cands   []fieldCand
	visited map[reflect.Type]bool // the embedded structs on the current path
}

// walk adds the fields of struct t, found at index, depth embeddings deep.
func (w *fieldWalker) walk(t reflect.Type, index []int, depth int) {
	if w.visited[t] {
		return
	}
	w.visited[t] = true
	defer delete(w.visited, t)
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Name == "_" {
			if depth == 0 && strings.Contains(tagOptions(sf), "toarray") {
				w.ti.toArray = true
			}
			continue
		}
		name, opts, skip := fieldTag(sf)
		if skip {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		if et, ok := flattened(sf, name); ok {
			w.walk(et, idx, depth+1)
			continue
		}
		if sf.IsExported() {
			w.add(sf, idx, depth, name, opts)
		}
	}
}

// add makes sf, named name (empty: its Go name) with tag options opts, a
// candidate.
func (w *fieldWalker) add(sf reflect.StructField, idx []int, depth int, name, opts string) {
	f := field{name: sf.Name, index: idx, omitEmpty: hasOpt(opts, "omitempty")}
	if name != "" {
		f.name = name
	}
	if hasOpt(opts, "keyasint") {
		if k, err := strconv.ParseInt(f.name, 10, 64); err == nil {
			f.intKey, f.key = true, k
		}
	}
	w.cands = append(w.cands, fieldCand{field: f, depth: depth, tagged: name != "", order: len(w.cands)})
}

// fieldTag splits sf's cbor tag (else its json tag) into the field's name
// and options; skip reports a field tagged "-".
func fieldTag(sf reflect.StructField) (name, opts string, skip bool) {
	tag, ok := sf.Tag.Lookup("cbor")
	if !ok {
		tag = sf.Tag.Get("json")
	}
	if tag == "-" {
		return "", "", true
	}
	name, opts, _ = strings.Cut(tag, ",")
	return name, opts, false
}

// flattened returns the struct type whose fields an embedded field without
// a tag name contributes to its parent: an embedded plain struct or pointer
// to one. Other embedded fields are fields like any other.
func flattened(sf reflect.StructField, name string) (reflect.Type, bool) {
	if !sf.Anonymous || name != "" {
		return nil, false
	}
	et := sf.Type
	if et.Kind() == reflect.Pointer {
		et = et.Elem()
	}
	if et.Kind() != reflect.Struct || special(et) != kPure || special(sf.Type) != kPure {
		return nil, false
	}
	return et, true
}

// dominantFields picks, among candidates of the same name, the one that is
// encoded, and returns the orders of those kept.
func dominantFields(cands []fieldCand) map[int]bool {
	byName := map[string][]fieldCand{}
	for _, c := range cands {
		byName[c.name] = append(byName[c.name], c)
	}
	keep := map[int]bool{}
	for _, cs := range byName {
		if order, ok := dominant(cs); ok {
			keep[order] = true
		}
	}
	return keep
}

// dominant returns the candidate that wins among cs, all of one name: the
// shallowest, else the one tagged among the equally shallow; none when the
// shallowest ones cancel out.
func dominant(cs []fieldCand) (order int, ok bool) {
	shallowest := cs[0].depth
	for _, c := range cs {
		shallowest = min(shallowest, c.depth)
	}
	var top, tagged []fieldCand
	for _, c := range cs {
		if c.depth != shallowest {
			continue
		}
		top = append(top, c)
		if c.tagged {
			tagged = append(tagged, c)
		}
	}
	switch {
	case len(top) == 1:
		return top[0].order, true
	case len(tagged) == 1:
		return tagged[0].order, true
	}
	return 0, false
}

func tagOptions(sf reflect.StructField) string {
	tag, ok := sf.Tag.Lookup("cbor")
	if !ok {
		tag = sf.Tag.Get("json")
	}
	_, opts, _ := strings.Cut(tag, ",")
	return opts
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}
