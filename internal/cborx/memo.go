package cborx

import (
	"bytes"
	"sync/atomic"
)

// Memo remembers the last few large items that a validation with a Memo
// (ValidateTaggedMemo) found valid as elements of a body, so that the
// same bytes in another body are not walked again. The mirrors of one
// model in a process each receive the same cache batch as the argument of
// an Apply call: a thousand mirrors would otherwise validate the same
// bytes a thousand times. Validation is a function of the bytes, the
// limits, the level the item stands at and the tag watched, so an item
// whose bytes equal a remembered one's, at the same level, under the same
// limits and tag, is valid as the remembered one was, adds the same count
// of items to the body's total and holds the tag or not as it did. A Memo
// is safe for concurrent use; its zero value is empty.
type Memo struct {
	e    [memoEntries]atomic.Pointer[memoEntry]
	next atomic.Uint32 // the slot the next item remembered takes
}

// memoEntries is how many items a Memo remembers.
const memoEntries = 8

// memoLevel is the level of the items remembered: the elements of a body
// (a call's arguments array, a result).
const memoLevel = 2

// Items worth remembering: comparing bytes must cost far less than
// walking them again, and copying them must not cost more than the walk
// (a large byte string is checked in one step).
const (
	memoMinBytes = 512
	memoMinItems = 32
)

// memoEntry is one valid item, with what its validation found. It is
// never changed once stored.
type memoEntry struct {
	data  []byte // a copy of the item's bytes
	lim   Limits
	tag   uint64
	total uint64 // items its arrays and maps add to the body's total
	found bool   // it holds an item tagged tag
}

// ValidateTaggedMemo is ValidateTagged that consults m for the body's
// large elements and remembers the large elements it validates in m.
func ValidateTaggedMemo(b []byte, lim Limits, tag uint64, m *Memo) (found bool, err error) {
	v := validator{Reader: NewReader(b), lim: lim, watch: true, tag: tag, memo: m}
	err = v.run()
	return v.found, err
}

// lookup returns the remembered item that the bytes at the reader's
// offset begin with, under v's limits and tag. A CBOR item's end is
// decided by its own bytes, so the item at the offset is exactly that
// one.
func (v *validator) lookup() *memoEntry {
	rest := v.Rest()
	for i := range v.memo.e {
		e := v.memo.e[i].Load()
		if e != nil && e.lim == v.lim && e.tag == v.tag && bytes.HasPrefix(rest, e.data) {
			return e
		}
	}
	return nil
}

// remember stores the item validated from off to the reader's offset,
// which added total items and found (or not) the tag.
func (v *validator) remember(off int, total uint64, found bool) {
	e := &memoEntry{data: bytes.Clone(v.Bytes(off)), lim: v.lim, tag: v.tag, total: total, found: found}
	i := (v.memo.next.Add(1) - 1) % memoEntries
	v.memo.e[i].Store(e)
}

// memoItem validates the item at the reader's offset, at level memoLevel,
// through v.memo: a remembered item is skipped, a large one is walked and
// remembered.
func (v *validator) memoItem(depth int) error {
	if v.Len() < memoMinBytes {
		return v.item(depth)
	}
	if e := v.lookup(); e != nil {
		v.off += len(e.data)
		v.found = v.found || e.found
		return v.addTotal(e.total, v.off-len(e.data))
	}
	off, total, found := v.off, v.total, v.found
	v.found = false
	err := v.item(depth)
	itemFound := v.found
	v.found = found || itemFound
	if err == nil && v.off-off >= memoMinBytes && v.total-total >= memoMinItems {
		v.remember(off, v.total-total, itemFound)
	}
	return err
}
