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
	r := NewReader(b)
	var total uint64
	if err := r.validate(lim, 1, &total); err != nil {
		return err
	}
	if r.Len() != 0 {
		return syntaxErr(r.off, "%d bytes of trailing data after the item", r.Len())
	}
	return nil
}

func (r *Reader) validate(lim Limits, depth int, total *uint64) error {
	off := r.off
	h, err := r.ReadHead()
	if err != nil {
		return err
	}
	switch h.Major {
	case MajorBytes:
		_, err = r.take(h.Arg)
		return err
	case MajorText:
		s, err := r.take(h.Arg)
		if err != nil {
			return err
		}
		if !utf8.Valid(s) {
			return syntaxErr(off, "text string is not valid UTF-8")
		}
		return nil
	case MajorArray, MajorMap:
		if depth > lim.MaxDepth {
			return fmt.Errorf("%w: nesting deeper than %d at offset %d", ErrLimit, lim.MaxDepth, off)
		}
		if h.Arg > uint64(lim.MaxItems) {
			return fmt.Errorf("%w: %s of %d items exceeds %d at offset %d", ErrLimit, h.TypeName(), h.Arg, lim.MaxItems, off)
		}
		n := h.Arg
		if h.Major == MajorMap {
			n *= 2
		}
		if n > uint64(r.Len()) {
			return syntaxErr(off, "%s of %d items cannot fit in %d bytes", h.TypeName(), h.Arg, r.Len())
		}
		if *total += n; lim.MaxTotal > 0 && *total > uint64(lim.MaxTotal) {
			return fmt.Errorf("%w: more than %d items in all at offset %d", ErrLimit, lim.MaxTotal, off)
		}
		for i := uint64(0); i < n; i++ {
			if err := r.validate(lim, depth+1, total); err != nil {
				return err
			}
		}
		return nil
	case MajorTag:
		if depth > lim.MaxDepth {
			return fmt.Errorf("%w: nesting deeper than %d at offset %d", ErrLimit, lim.MaxDepth, off)
		}
		return r.validate(lim, depth+1, total)
	case MajorSimple:
		if h.AI < 24 && h.AI < SimpleFalse {
			return syntaxErr(off, "unassigned simple value %d", h.AI)
		}
		if h.AI == 24 {
			return syntaxErr(off, "unassigned simple value %d", h.Arg)
		}
	}
	return nil
}

// CheckDepth applies Validate's nesting rule alone to the first item of b,
// as if that item stood at level 1: arrays, maps and tags may nest at most
// max levels. It is for a sender checking what it encoded (well-formed, so
// nothing else is checked) against what the receiver's Validate will allow
// at the item's position in the message. Errors wrap ErrLimit, or ErrSyntax
// for bytes that are not CBOR.
func CheckDepth(b []byte, max int) error {
	r := NewReader(b)
	return r.checkDepth(1, max)
}

func (r *Reader) checkDepth(level, max int) error {
	off := r.off
	h, err := r.ReadHead()
	if err != nil {
		return err
	}
	switch h.Major {
	case MajorBytes, MajorText:
		_, err = r.take(h.Arg)
		return err
	case MajorArray, MajorMap, MajorTag:
		if level > max {
			return fmt.Errorf("%w: nesting deeper than %d at offset %d", ErrLimit, max, off)
		}
		if h.Major == MajorTag {
			return r.checkDepth(level+1, max)
		}
		n := h.Arg
		if h.Major == MajorMap {
			n *= 2
		}
		if n > uint64(r.Len()) {
			return syntaxErr(off, "%s of %d items cannot fit in %d bytes", h.TypeName(), h.Arg, r.Len())
		}
		for i := uint64(0); i < n; i++ {
			if err := r.checkDepth(level+1, max); err != nil {
				return err
			}
		}
	}
	return nil
}
