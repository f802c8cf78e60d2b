package cborx

import (
	"fmt"
	"unicode/utf8"
)

// Limits bound what Validate accepts.
type Limits struct {
	MaxDepth int // nesting of arrays, maps and tags; the top item is depth 1
	MaxItems int // items in one array or pairs in one map
	// MaxTotal bounds the items of all arrays and maps of the item
	// together (pairs count twice), or 0 for no bound: decoding allocates
	// per item, so this bounds what one message can make the receiver
	// allocate.
	MaxTotal int
}

// DefaultLimits are the limits Tether applies to every frame from a peer.
var DefaultLimits = Limits{MaxDepth: 32, MaxItems: 128 * 1024, MaxTotal: 1 << 20}

// Validate checks that b holds exactly one well-formed CBOR item: definite
// lengths only, valid UTF-8 in text strings, valid simple values, nesting and
// container sizes within lim. Errors wrap ErrSyntax or ErrLimit.
func Validate(b []byte, lim Limits) error {
	v := validator{Reader: NewReader(b), lim: lim}
	return v.run()
}

// ValidateTagged is Validate that also reports whether b holds an item
// tagged tag anywhere, so that a receiver looking for such items
// (CollectTagged) need not walk b again when it holds none: the walk
// costs as much as the validation, once per frame.
func ValidateTagged(b []byte, lim Limits, tag uint64) (found bool, err error) {
	v := validator{Reader: NewReader(b), lim: lim, watch: true, tag: tag}
	err = v.run()
	return v.found, err
}

// run validates the reader's one item and checks that nothing follows it.
func (v *validator) run() error {
	if err := v.item(1); err != nil {
		return err
	}
	if v.Len() != 0 {
		return syntaxErr(v.off, "%d bytes of trailing data after the item", v.Len())
	}
	return nil
}

// validator carries Validate's limits and its running count of container
// items through the recursion over one item.
type validator struct {
	Reader
	lim   Limits
	total uint64 // items of all arrays and maps so far (pairs count twice)
	// With watch set, found records whether a tag numbered tag was seen
	// (ValidateTagged).
	watch bool
	tag   uint64
	found bool
	// general turns scalar off, for the tests that compare it with item.
	general bool
}

// item validates the next item, which stands at nesting level depth.
func (v *validator) item(depth int) error {
	off := v.off
	h, err := v.ReadHead()
	if err != nil {
		return err
	}
	switch h.Major {
	case MajorBytes:
		_, err = v.take(h.Arg)
		return err
	case MajorText:
		return v.text(h, off)
	case MajorArray, MajorMap:
		return v.container(h, off, depth)
	case MajorTag:
		if depth > v.lim.MaxDepth {
			return tooDeep(v.lim.MaxDepth, off)
		}
		if v.watch && h.Arg == v.tag {
			v.found = true
		}
		return v.item(depth + 1)
	case MajorSimple:
		return checkSimple(h, off)
	}
	return nil
}

// text consumes the body of the text string whose head h began at off and
// checks that it is valid UTF-8.
func (v *validator) text(h Head, off int) error {
	s, err := v.take(h.Arg)
	if err != nil {
		return err
	}
	if !utf8.Valid(s) {
		return syntaxErr(off, "text string is not valid UTF-8")
	}
	return nil
}

// container checks the array or map whose head h began at off against the
// depth, size and total limits, then validates its items one level deeper.
func (v *validator) container(h Head, off, depth int) error {
	if depth > v.lim.MaxDepth {
		return tooDeep(v.lim.MaxDepth, off)
	}
	if h.Arg > uint64(v.lim.MaxItems) {
		return fmt.Errorf("%w: %s of %d items exceeds %d at offset %d", ErrLimit, h.TypeName(), h.Arg, v.lim.MaxItems, off)
	}
	n, err := v.children(h, off)
	if err != nil {
		return err
	}
	if v.total += n; v.lim.MaxTotal > 0 && v.total > uint64(v.lim.MaxTotal) {
		return fmt.Errorf("%w: more than %d items in all at offset %d", ErrLimit, v.lim.MaxTotal, off)
	}
	return v.items(n, depth+1)
}

// items validates the n items of a container, which stand at nesting
// level depth. A scalar, and an array of fewer than 24 items that
// container would accept, are read here from their first byte (scalar,
// smallArray); anything else, and every error, goes through item.
func (v *validator) items(n uint64, depth int) error {
	for i := uint64(0); i < n; i++ {
		if v.scalar() {
			continue
		}
		if k, ok := v.smallArray(depth); ok {
			if err := v.items(k, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := v.item(depth); err != nil {
			return err
		}
	}
	return nil
}

// smallArray consumes the head of an array of fewer than 24 items at
// nesting level depth, and counts its items, when container would accept
// it: within the depth, the items per container and the items in all, and
// no more items than bytes left. It reports false, consuming and counting
// nothing, otherwise; item then reads it and reports what is wrong.
func (v *validator) smallArray(depth int) (uint64, bool) {
	if v.general || v.off >= len(v.b) {
		return 0, false
	}
	ib := v.b[v.off]
	if ib < 0x80 || ib >= 0x98 {
		return 0, false
	}
	k := uint64(ib - 0x80)
	if depth > v.lim.MaxDepth || k > uint64(v.lim.MaxItems) || k > uint64(len(v.b)-v.off-1) ||
		v.lim.MaxTotal > 0 && v.total+k > uint64(v.lim.MaxTotal) {
		return 0, false
	}
	v.off++
	v.total += k
	return k, true
}

// scalar consumes the next item when it is one that item would accept
// without looking further, read here from its first byte rather than
// through ReadHead: an integer (any width), false, true, null or
// undefined, or a text string shorter than 24 bytes, all ASCII. It
// reports false, consuming nothing, for anything else, cut short or not,
// which item then reads and judges. The items of a container are mostly
// such (a cache batch's versions, keys and flags), and item's general
// path costs several times as much per item.
func (v *validator) scalar() bool {
	if v.general {
		return false
	}
	b := v.b[v.off:]
	if len(b) == 0 {
		return false
	}
	ib := b[0]
	switch {
	case ib < 0x40: // an unsigned or negative integer
		n := 1
		switch ai := ib & 31; {
		case ai < 24:
		case ai <= 27:
			n += 1 << (ai - 24)
		default:
			return false // reserved or indefinite
		}
		if len(b) < n {
			return false
		}
		v.off += n
		return true
	case ib >= 0xf4 && ib <= 0xf7: // false, true, null, undefined
		v.off++
		return true
	case ib >= 0x60 && ib < 0x78: // a text string of 0 to 23 bytes
		n := 1 + int(ib-0x60)
		if len(b) < n {
			return false
		}
		for _, c := range b[1:n] {
			if c >= utf8.RuneSelf {
				return false // item checks it whole
			}
		}
		v.off += n
		return true
	}
	return false
}

// checkSimple rejects the simple values CBOR leaves unassigned: those
// below false, and every two-byte one (ReadHead has already rejected the
// two-byte forms of the values below 32).
func checkSimple(h Head, off int) error {
	if h.AI < 24 && h.AI < SimpleFalse {
		return syntaxErr(off, "unassigned simple value %d", h.AI)
	}
	if h.AI == 24 {
		return syntaxErr(off, "unassigned simple value %d", h.Arg)
	}
	return nil
}

// tooDeep is the error for an array, map or tag at offset off nested more
// than max levels deep; Validate and CheckDepth report it alike.
func tooDeep(max, off int) error {
	return fmt.Errorf("%w: nesting deeper than %d at offset %d", ErrLimit, max, off)
}

// CheckSent applies to the first item of b the two rules of Validate that
// a sender's encoder can break: nesting at most max levels (as CheckDepth)
// and text strings in valid UTF-8, which a Go string need not be. It is
// for a sender checking what a general-purpose encoder wrote before the
// receiver's Validate refuses the whole message. Errors wrap ErrLimit,
// ErrInvalidUTF8, or ErrSyntax for bytes that are not CBOR.
func CheckSent(b []byte, max int) error {
	r := NewReader(b)
	return r.checkSent(1, max, true)
}

// CheckDepth applies Validate's nesting rule alone to the first item of b,
// as if that item stood at level 1: arrays, maps and tags may nest at most
// max levels. It is for a sender checking what it encoded (well-formed, so
// nothing else is checked) against what the receiver's Validate will allow
// at the item's position in the message. Errors wrap ErrLimit, or ErrSyntax
// for bytes that are not CBOR.
func CheckDepth(b []byte, max int) error {
	r := NewReader(b)
	return r.checkSent(1, max, false)
}

// checkSent consumes one item standing at nesting level level and fails
// if it, or anything inside it, nests deeper than max or, when text is
// set, is a text string that is not valid UTF-8. CheckDepth and CheckSent
// share it so that their nesting rule cannot drift apart.
func (r *Reader) checkSent(level, max int, text bool) error {
	off := r.off
	h, err := r.ReadHead()
	if err != nil {
		return err
	}
	if h.Major == MajorBytes || h.Major == MajorText {
		s, err := r.take(h.Arg)
		if err == nil && text && h.Major == MajorText && !utf8.Valid(s) {
			err = fmt.Errorf("%w at offset %d", ErrInvalidUTF8, off)
		}
		return err
	}
	if h.nests() && level > max {
		return tooDeep(max, off)
	}
	n, err := r.children(h, off)
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		if err := r.checkSent(level+1, max, text); err != nil {
			return err
		}
	}
	return nil
}
