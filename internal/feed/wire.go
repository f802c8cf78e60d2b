package feed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/tether-go/tether/internal/cborx"
)

// ErrBadBatch reports a cache batch whose bytes are not the Batch of
// docs/protocol.md §11.5: a wrong length, a wrong type, a deleted change
// with a value, trailing data. The mirror refuses the batch with it.
var ErrBadBatch = errors.New("tether: malformed cache batch")

// The lengths of the arrays a batch is made of (§11.5).
const (
	batchFields  = 9
	stepFields   = 3
	changeFields = 3
)

// SnapshotStart reports whether b is the first batch of a snapshot: the
// broker's snapshotStart seam, for its interceptors (broker.CallSnapshot).
func (b *Batch) SnapshotStart() bool { return b.Snapshot && b.First }

// MarshalCBOR encodes the batch as docs/protocol.md §11.5 shows it, with
// the encoder of the feed's own batches (appendBatch), so that a Batch
// marshalled anywhere has the bytes a subscription sends.
func (b Batch) MarshalCBOR() ([]byte, error) { return appendBatch(nil, &b), nil }

// encodedBatch is a batch as a pusher sends it: the bytes appendBatch and
// the shared encodings of steps made of it. Every key and value in it was
// checked when it entered the feed (a model's Set encodes through the
// broker's codec and CheckEntry; a mirror checks what it receives), so
// the broker writes it into the call's frame as it is (its encodedCBOR
// seam), without marshalling and checking it again for each subscription.
type encodedBatch []byte

// EncodedCBOR returns the batch's bytes: the broker's encodedCBOR seam.
func (b encodedBatch) EncodedCBOR(cborx.Trusted) []byte { return b }

// appendBatch appends b's CBOR: the one encoder of batches.
func appendBatch(buf []byte, b *Batch) []byte {
	buf = appendBatchHead(buf, b.Epoch, b.Version, b.Stale, b.Snapshot, b.More)
	if b.Steps == nil {
		buf = cborx.AppendNull(buf)
	} else {
		buf = cborx.AppendArray(buf, len(b.Steps))
		for i := range b.Steps {
			buf = appendStep(buf, &b.Steps[i])
		}
	}
	buf = appendChanges(buf, b.Entries)
	return appendBatchTail(buf, b.First, b.Token)
}

// appendBatchHead appends the array head and the fields before the steps;
// the shared batches of the live tail (stepsBatch) start with it too.
func appendBatchHead(buf []byte, epoch string, version uint64, stale, snapshot, more bool) []byte {
	buf = cborx.AppendArray(buf, batchFields)
	buf = cborx.AppendText(buf, epoch)
	buf = cborx.AppendUint(buf, version)
	buf = cborx.AppendBool(buf, stale)
	buf = cborx.AppendBool(buf, snapshot)
	return cborx.AppendBool(buf, more)
}

// appendBatchTail appends the fields after the entries.
func appendBatchTail(buf []byte, first bool, token string) []byte {
	buf = cborx.AppendBool(buf, first)
	return cborx.AppendText(buf, token)
}

// appendStep appends one step's CBOR.
func appendStep(buf []byte, s *Step) []byte {
	buf = cborx.AppendArray(buf, stepFields)
	buf = cborx.AppendUint(buf, s.From)
	buf = cborx.AppendUint(buf, s.Version)
	return appendChanges(buf, s.Changes)
}

// appendChanges appends an array of changes, or null for a nil slice.
func appendChanges(buf []byte, cs []Change) []byte {
	if cs == nil {
		return cborx.AppendNull(buf)
	}
	buf = cborx.AppendArray(buf, len(cs))
	for i := range cs {
		buf = appendChange(buf, &cs[i])
	}
	return buf
}

// appendChange appends one change. Key and Value are CBOR items already;
// an empty one is null.
func appendChange(buf []byte, c *Change) []byte {
	buf = cborx.AppendArray(buf, changeFields)
	buf = appendItem(buf, c.Key)
	buf = appendItem(buf, c.Value)
	return cborx.AppendBool(buf, c.Deleted)
}

// appendItem appends an encoded item, or null when there is none.
func appendItem(buf, item []byte) []byte {
	if len(item) == 0 {
		return cborx.AppendNull(buf)
	}
	return append(buf, item...)
}

// DecodeValidated decodes the batch at the start of data, the rest of a
// message the broker validated whole (its validatedDecoder seam), and
// returns its length: as UnmarshalCBOR, which fxamacker would otherwise
// call after checking the bytes again, but without the broker walking the
// batch first to find its end.
func (b *Batch) DecodeValidated(_ cborx.Trusted, data []byte) (int, error) {
	return b.decodePrefix(data)
}

// UnmarshalCBOR decodes a batch strictly and without reflection: exactly
// the arrays of §11.5, each of its length and field types, a deleted
// change's value null, nothing after the batch. Anything else is an error
// matching ErrBadBatch, and b is left unchanged. Keys and values are
// copied, one allocation per change, so that none of them keeps the
// message's buffer (or another entry's batch) alive.
//
// The mirrors of one model in this process receive the same bytes, each
// batch once per mirror: a batch just decoded is remembered with its bytes
// (recentBatches), and the same bytes again decode to it, sharing its
// steps, changes, keys and values, which nobody changes once decoded.
func (b *Batch) UnmarshalCBOR(data []byte) error {
	var out Batch
	n, err := out.decodePrefix(data)
	if err != nil {
		return err
	}
	if n != len(data) {
		return fmt.Errorf("%w: %d bytes after the batch", ErrBadBatch, len(data)-n)
	}
	*b = out
	return nil
}

// decodePrefix decodes the batch at the start of data into b and returns
// its length, b unchanged on error. A remembered batch (recentBatches)
// whose bytes begin data is the batch there: a well-formed CBOR item is
// never the beginning of another one.
func (b *Batch) decodePrefix(data []byte) (int, error) {
	if out, n, ok := recent.find(data); ok {
		*b = out
		return n, nil
	}
	d := batchDecoder{r: cborx.NewReader(data)}
	var out Batch
	if err := d.batch(&out); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadBatch, err)
	}
	n := d.r.Offset()
	recent.add(data[:n], out)
	*b = out
	return n, nil
}

// recentBatches holds the last batches decoded in this process with
// their bytes (a copy), for the other mirrors of the same model that
// receive them: at most len(e) batches of at most maxBatchBytes of keys
// and values each.
type recentBatches struct {
	mu   sync.Mutex
	e    [4]recentBatch
	next int // the entry add replaces
}

// recentBatch is one batch decoded and the bytes it was decoded from,
// and its steps made into entries of a log, once a mirror logged them.
type recentBatch struct {
	data   []byte
	b      Batch
	logged []logStep
}

// recent is the process's recentBatches.
var recent recentBatches

// minShared is the smallest batch worth remembering: comparing and
// copying its bytes must cost less than decoding it again.
const minShared = 512

// find returns the remembered batch whose bytes begin data, and their
// length.
func (r *recentBatches) find(data []byte) (Batch, int, bool) {
	if len(data) < minShared {
		return Batch{}, 0, false // shorter than any batch remembered (add)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.e {
		if e := &r.e[i]; len(e.data) > 0 && len(e.data) <= len(data) && bytes.Equal(e.data, data[:len(e.data)]) {
			return e.b, len(e.data), true
		}
	}
	return Batch{}, 0, false
}

// add remembers a batch decoded from data, replacing the oldest one.
func (r *recentBatches) add(data []byte, b Batch) {
	if len(data) < minShared {
		return
	}
	cp := bytes.Clone(data)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.e[r.next] = recentBatch{data: cp, b: b}
	r.next = (r.next + 1) % len(r.e)
}

// logged returns the entries of a log for steps, a batch's steps from
// some point on (a mirror skips those it already holds). When they are a
// remembered batch's, the entries are made once, for all the mirrors that
// log them (logChunk): each would otherwise copy the same steps, up to
// 2,048 of them, into an array of its own.
func (r *recentBatches) logged(steps []Step) []logStep {
	n := len(steps)
	if n == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, all := r.holding(steps); e != nil {
		if e.logged == nil {
			e.logged = logChunk(all)
		}
		return e.logged[len(all)-n:]
	}
	return logChunk(steps)
}

// holding returns the remembered batch whose steps end with steps, and
// its steps, or nil. r.mu held.
func (r *recentBatches) holding(steps []Step) (*recentBatch, []Step) {
	n := len(steps)
	for i := range r.e {
		e := &r.e[i]
		all := e.b.Steps
		if m := len(all); n > m || &all[m-n] != &steps[0] {
			continue
		}
		return e, all
	}
	return nil, nil
}

// batchDecoder reads one batch. The changes of all its steps share one
// slice, cut into each step's part once the batch is read (changeAt holds
// where each step's part starts).
type batchDecoder struct {
	r        cborx.Reader
	changes  []Change
	changeAt []int
	general  bool // stepFast off: the tests compare it with the general reader
}

// batch reads the whole batch into b.
func (d *batchDecoder) batch(b *Batch) error {
	if err := d.arrayOf(batchFields, "batch"); err != nil {
		return err
	}
	var err error
	if b.Epoch, err = d.text("epoch"); err != nil {
		return err
	}
	if b.Version, err = d.uint("version"); err != nil {
		return err
	}
	if err := d.bools(&b.Stale, &b.Snapshot, &b.More); err != nil {
		return err
	}
	if b.Steps, err = d.steps(); err != nil {
		return err
	}
	if b.Entries, err = d.changeList(); err != nil {
		return fmt.Errorf("entries: %w", err)
	}
	if b.First, err = d.bool(); err != nil {
		return err
	}
	b.Token, err = d.text("token")
	return err
}

// steps reads the steps, null or an array, and cuts the shared slice of
// their changes into each step's part.
func (d *batchDecoder) steps() ([]Step, error) {
	if d.r.ReadNull() {
		return nil, nil
	}
	n, err := d.r.ReadArray()
	if err != nil {
		return nil, fmt.Errorf("steps: %w", err)
	}
	steps := make([]Step, n)
	d.changeAt = make([]int, n)
	// A model's steps hold one change each: sized for those, the shared
	// slice is allocated once rather than grown change by change. The
	// count is the peer's: ReadArray checked that so many items fit in
	// the bytes left, and the capacity is capped at a batch's bound.
	d.changes = make([]Change, 0, min(n, maxBatchChanges))
	nulls := make([]bool, n)
	for i := range steps {
		if nulls[i], err = d.step(&steps[i], i); err != nil {
			return nil, fmt.Errorf("step %d: %w", i, err)
		}
	}
	for i := range steps {
		end := len(d.changes)
		if i+1 < n {
			end = d.changeAt[i+1]
		}
		if !nulls[i] {
			// A full slice expression: appending to one step's changes
			// must never write into the next one's.
			steps[i].Changes = d.changes[d.changeAt[i]:end:end]
		}
	}
	return steps, nil
}

// step reads step i, its changes into the shared slice; it reports
// whether the changes were null. A step of the usual shape is read by
// stepFast; anything else, and every error, by the general reader below.
func (d *batchDecoder) step(s *Step, i int) (null bool, err error) {
	if d.stepFast(s, i) {
		return false, nil
	}
	if err := d.arrayOf(stepFields, "step"); err != nil {
		return false, err
	}
	if s.From, err = d.uint("from"); err != nil {
		return false, err
	}
	if s.Version, err = d.uint("version"); err != nil {
		return false, err
	}
	d.changeAt[i] = len(d.changes)
	if d.r.ReadNull() {
		return true, nil
	}
	n, err := d.r.ReadArray()
	if err != nil {
		return false, fmt.Errorf("changes: %w", err)
	}
	for j := range n {
		var c Change
		if err := d.change(&c); err != nil {
			return false, fmt.Errorf("change %d: %w", j, err)
		}
		d.changes = append(d.changes, c)
	}
	return false, nil
}

// stepFast reads step i when it has the shape a model's steps have: an
// array of three, two unsigned integers and an array of fewer than 24
// changes, each an array of three (a key, a value, a boolean). It reads
// the bytes directly rather than through a cborx.Reader call per field,
// and accepts exactly what step accepts for such a step, with the same
// result: the heads as cborx.Reader.ReadHead reads them (any width,
// nothing reserved or indefinite), a key or value of any kind (strings,
// scalars, and arrays, maps and tags through Reader.Skip), a deleted
// change's value null. On anything else it consumes nothing, appends
// nothing and reports false, and step reads the step again, reporting
// what is wrong with it.
func (d *batchDecoder) stepFast(s *Step, i int) bool {
	if d.general {
		return false
	}
	p := d.r.Rest()
	if len(p) == 0 || p[0] != 0x80|stepFields {
		return false
	}
	k := 1
	from, n, ok := fastUint(p[k:])
	if !ok {
		return false
	}
	k += n
	version, n, ok := fastUint(p[k:])
	if !ok || k+n >= len(p) {
		return false
	}
	k += n
	if p[k] < 0x80 || p[k] > 0x97 { // an array of 0 to 23 changes
		return false
	}
	nc := int(p[k] - 0x80)
	k++
	start := len(d.changes)
	for range nc {
		c, n, ok := fastChange(p[k:])
		if !ok {
			clear(d.changes[start:])
			d.changes = d.changes[:start]
			return false
		}
		d.changes = append(d.changes, c)
		k += n
	}
	// Cannot fail: k bytes were read above.
	if d.r.Advance(k) != nil {
		panic("feed: a step read past its batch")
	}
	s.From, s.Version = from, version
	d.changeAt[i] = start
	return true
}

// fastChange reads one change of a step as stepFast does, copying its key
// and value into one buffer as change does, and returns its length.
func fastChange(p []byte) (Change, int, bool) {
	if len(p) == 0 || p[0] != 0x80|changeFields {
		return Change{}, 0, false
	}
	k := 1
	kn, ok := fastItem(p[k:])
	if !ok {
		return Change{}, 0, false
	}
	key := p[k : k+kn]
	k += kn
	vn, ok := fastItem(p[k:])
	if !ok || k+vn >= len(p) {
		return Change{}, 0, false
	}
	value := p[k : k+vn]
	k += vn
	var c Change
	switch p[k] {
	case 0xf4:
	case 0xf5:
		if !isNull(value) {
			return Change{}, 0, false
		}
		c.Deleted = true
	default:
		return Change{}, 0, false
	}
	k++
	c.own(key, value)
	return c, k, true
}

// fastHead reads the head at the start of p as cborx.Reader.ReadHead
// does: its major type, its argument and its length, or false for a head
// ReadHead refuses (reserved or indefinite, a two-byte simple value below
// 32, cut short).
func fastHead(p []byte) (major byte, arg uint64, n int, ok bool) {
	if len(p) == 0 {
		return 0, 0, 0, false
	}
	major, ai := p[0]>>5, p[0]&31
	switch {
	case ai < 24:
		return major, uint64(ai), 1, true
	case ai == 24:
		if len(p) < 2 || major == cborx.MajorSimple && p[1] < 32 {
			return 0, 0, 0, false
		}
		return major, uint64(p[1]), 2, true
	case ai == 25:
		if len(p) < 3 {
			return 0, 0, 0, false
		}
		return major, uint64(binary.BigEndian.Uint16(p[1:])), 3, true
	case ai == 26:
		if len(p) < 5 {
			return 0, 0, 0, false
		}
		return major, uint64(binary.BigEndian.Uint32(p[1:])), 5, true
	case ai == 27:
		if len(p) < 9 {
			return 0, 0, 0, false
		}
		return major, binary.BigEndian.Uint64(p[1:]), 9, true
	}
	return 0, 0, 0, false
}

// fastUint reads an unsigned integer as cborx.Reader.ReadUint does.
func fastUint(p []byte) (uint64, int, bool) {
	major, arg, n, ok := fastHead(p)
	if !ok || major != cborx.MajorUint {
		return 0, 0, false
	}
	return arg, n, true
}

// fastItem returns the length of the item at the start of p as
// batchDecoder.item finds it (cborx.Reader.Skip): an integer or simple
// value is its head, a string its head and bytes, and an array, map or tag
// is skipped by a Reader.
func fastItem(p []byte) (int, bool) {
	major, arg, n, ok := fastHead(p)
	if !ok {
		return 0, false
	}
	switch major {
	case cborx.MajorUint, cborx.MajorNeg, cborx.MajorSimple:
		return n, true
	case cborx.MajorBytes, cborx.MajorText:
		if arg > uint64(len(p)-n) {
			return 0, false
		}
		return n + int(arg), true
	}
	r := cborx.NewReader(p)
	if r.Skip() != nil {
		return 0, false
	}
	return r.Offset(), true
}

// changeList reads a list of changes of its own (a snapshot's entries):
// null, or an array.
func (d *batchDecoder) changeList() ([]Change, error) {
	if d.r.ReadNull() {
		return nil, nil
	}
	n, err := d.r.ReadArray()
	if err != nil {
		return nil, err
	}
	cs := make([]Change, n)
	for i := range cs {
		if err := d.change(&cs[i]); err != nil {
			return nil, fmt.Errorf("change %d: %w", i, err)
		}
	}
	return cs, nil
}

// change reads one change, its key and value copied into one buffer.
func (d *batchDecoder) change(c *Change) error {
	if err := d.arrayOf(changeFields, "change"); err != nil {
		return err
	}
	key, err := d.item()
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	value, err := d.item()
	if err != nil {
		return fmt.Errorf("value: %w", err)
	}
	if c.Deleted, err = d.bool(); err != nil {
		return err
	}
	if c.Deleted && !isNull(value) {
		return errors.New("a deleted entry's value must be null")
	}
	c.own(key, value)
	return nil
}

// isNull reports whether an encoded item is null or undefined.
func isNull(item []byte) bool {
	r := cborx.NewReader(item)
	return r.ReadNull()
}

// arrayOf reads an array head that must announce n items.
func (d *batchDecoder) arrayOf(n int, what string) error {
	off := d.r.Offset()
	got, err := d.r.ReadArray()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got != n {
		return fmt.Errorf("%s at offset %d: an array of %d items, not %d", what, off, got, n)
	}
	return nil
}

// text reads a text string, which must be valid UTF-8.
func (d *batchDecoder) text(what string) (string, error) {
	p, err := d.r.ReadText()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !utf8.Valid(p) {
		return "", fmt.Errorf("%s: invalid UTF-8", what)
	}
	return string(p), nil
}

// uint reads an unsigned integer.
func (d *batchDecoder) uint(what string) (uint64, error) {
	v, err := d.r.ReadUint()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return v, nil
}

// bool reads true or false.
func (d *batchDecoder) bool() (bool, error) {
	off := d.r.Offset()
	h, err := d.r.ReadHead()
	if err != nil {
		return false, err
	}
	if h.Major == cborx.MajorSimple && (h.AI == cborx.SimpleTrue || h.AI == cborx.SimpleFalse) {
		return h.AI == cborx.SimpleTrue, nil
	}
	return false, fmt.Errorf("offset %d: expected a boolean, found %s", off, h.TypeName())
}

// bools reads three booleans in a row.
func (d *batchDecoder) bools(a, b, c *bool) (err error) {
	if *a, err = d.bool(); err != nil {
		return err
	}
	if *b, err = d.bool(); err != nil {
		return err
	}
	*c, err = d.bool()
	return err
}

// item consumes one whole item (a key or value) and returns a view of its
// bytes.
func (d *batchDecoder) item() ([]byte, error) {
	start := d.r.Offset()
	if err := d.r.Skip(); err != nil {
		return nil, err
	}
	return d.r.Bytes(start), nil
}

// own sets c's key and value to copies of key and value, in one
// allocation (a deleted entry's value stays nil).
func (c *Change) own(key, value []byte) {
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	c.Key, c.Value = buf[:len(key):len(key)], buf[len(key):]
	if c.Deleted {
		c.Value = nil
	}
}
