package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/tether-go/tether/internal/cborx"
)

// Metadata is a call's string key/value metadata: what a caller says about
// a call besides its arguments (a trace context, a request id, a tenant).
// Keys are 1 to MaxMetadataKey bytes of lower-case ASCII letters, digits,
// '-', '_' and '.'; a call carries at most MaxMetadataEntries entries and
// MaxMetadataBytes bytes of keys and values in all. A call that breaks a
// bound fails with ErrInvalidMetadata: on the caller's side before
// anything is sent, on the callee's side (a peer that does not check)
// answered to that call only, the connection serving on.
type Metadata map[string]string

// Bounds of a call's metadata (see Metadata).
const (
	MaxMetadataEntries = 64
	MaxMetadataKey     = 64
	MaxMetadataBytes   = 8 << 10
)

// ErrInvalidMetadata reports metadata that breaks the rules of Metadata: a
// key that is empty, too long or not lower-case ASCII, or too many entries
// or bytes. Its code is InvalidArgument.
var ErrInvalidMetadata = errors.New("tether: invalid call metadata")

// mdOutKey is the context key of the metadata a call made with the
// context sends.
type mdOutKey struct{}

// WithOutgoingMetadata returns a context whose calls carry md, in place of
// any metadata ctx had for outgoing calls. md is copied: changing it later
// does not change the calls.
func WithOutgoingMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, mdOutKey{}, maps.Clone(md))
}

// AppendToOutgoing returns a context whose calls carry the metadata of ctx
// with the pairs kv (key, value, key, value, ...) added; a key given again
// takes the later value. It panics on an odd number of strings, as
// grpc's metadata.Pairs does: that is a mistake in the program.
func AppendToOutgoing(ctx context.Context, kv ...string) context.Context {
	if len(kv)%2 == 1 {
		panic(fmt.Sprintf("broker.AppendToOutgoing: odd number of strings (%d): want key, value pairs", len(kv)))
	}
	old, _ := ctx.Value(mdOutKey{}).(Metadata)
	md := make(Metadata, len(old)+len(kv)/2)
	maps.Copy(md, old)
	for i := 0; i < len(kv); i += 2 {
		md[kv[i]] = kv[i+1]
	}
	return context.WithValue(ctx, mdOutKey{}, md)
}

// OutgoingMetadata returns a copy of the metadata calls made with ctx
// carry, set by WithOutgoingMetadata and AppendToOutgoing; false when
// there is none. A relay passing a call on also sends the metadata it
// received (see IncomingMetadata), which this does not include.
func OutgoingMetadata(ctx context.Context) (Metadata, bool) {
	md, ok := ctx.Value(mdOutKey{}).(Metadata)
	return maps.Clone(md), ok
}

// IncomingMetadata returns a copy of the metadata the call ctx belongs to
// arrived with, in a handler or an interceptor (and in contexts derived
// from theirs); false when the call carried none or ctx belongs to no
// call. A call a relay passes on for its caller (a proxy, see Forwarded)
// carries this metadata on unchanged, merged under what the relay adds
// with WithOutgoingMetadata or AppendToOutgoing; a handler's other calls
// do not carry it unless the handler says so.
func IncomingMetadata(ctx context.Context) (Metadata, bool) {
	x, ok := ctx.Value(callKey{}).(*callCtx)
	if !ok || x.md == nil {
		return nil, false
	}
	return maps.Clone(x.md), true
}

// outgoingMetadata is the metadata a call made with ctx sends: what the
// caller set, over the incoming metadata of a call a relay passes on.
// It is nil, and costs two context lookups, for a call without any.
func outgoingMetadata(ctx context.Context) Metadata {
	out, _ := ctx.Value(mdOutKey{}).(Metadata)
	x, ok := ctx.Value(callKey{}).(*callCtx)
	if !ok || !x.forward || len(x.md) == 0 {
		return out
	}
	if len(out) == 0 {
		return x.md // never changed once received: safe to share
	}
	md := maps.Clone(x.md)
	maps.Copy(md, out)
	return md
}

// checkMetadata checks md against the bounds of Metadata.
func checkMetadata(md Metadata) error {
	if len(md) > MaxMetadataEntries {
		return fmt.Errorf("%w: %d entries, more than %d", ErrInvalidMetadata, len(md), MaxMetadataEntries)
	}
	size := 0
	for k, v := range md {
		if err := checkMetadataKey(k); err != nil {
			return err
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: the value of %q is not valid UTF-8; encode binary values (base64, say)", ErrInvalidMetadata, k)
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataBytes {
		return fmt.Errorf("%w: %d bytes of keys and values, more than %d", ErrInvalidMetadata, size, MaxMetadataBytes)
	}
	return nil
}

// checkMetadataKey checks one key: 1 to MaxMetadataKey bytes of a-z, 0-9,
// '-', '_' and '.'.
func checkMetadataKey(k string) error {
	if len(k) == 0 || len(k) > MaxMetadataKey {
		return fmt.Errorf("%w: key %.80q is %d bytes; want 1 to %d", ErrInvalidMetadata, k, len(k), MaxMetadataKey)
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if (b < 'a' || b > 'z') && (b < '0' || b > '9') && b != '-' && b != '_' && b != '.' {
			return fmt.Errorf("%w: key %q: want lower-case ASCII letters, digits, '-', '_' and '.'", ErrInvalidMetadata, k)
		}
	}
	return nil
}

// appendMetadata appends the value of extension key 3: a map of text keys
// to text values, keys in ascending byte order so that the bytes are the
// same for the same metadata.
func appendMetadata(b []byte, md Metadata) []byte {
	b = cborx.AppendMap(b, len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		b = cborx.AppendText(b, k)
		b = cborx.AppendText(b, md[k])
	}
	return b
}

// parseMetadata reads the value of extension key 3. A map that is not of
// text to text is a protocol violation (errMalformedMetadata); one that breaks
// the bounds is ErrInvalidMetadata, answered to the caller. The frame was
// validated against the decoding limits (duplicate keys refused), so a
// large map costs no more than the frame's size.
func parseMetadata(r *cborx.Reader) (Metadata, error) {
	h, err := r.ReadHead()
	if err != nil || h.Major != cborx.MajorMap {
		return nil, errMalformedMetadata
	}
	if h.Arg > MaxMetadataEntries {
		return nil, fmt.Errorf("%w: %d entries, more than %d", ErrInvalidMetadata, h.Arg, MaxMetadataEntries)
	}
	md := make(Metadata, h.Arg)
	for i := uint64(0); i < h.Arg; i++ {
		k, err1 := r.ReadText()
		v, err2 := r.ReadText()
		if err1 != nil || err2 != nil {
			return nil, errMalformedMetadata
		}
		md[string(k)] = string(v)
	}
	if err := checkMetadata(md); err != nil {
		return nil, err
	}
	return md, nil
}
