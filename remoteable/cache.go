package remoteable

import (
	"context"
	"reflect"
)

// Cacheable is implemented by observable models. A Cacheable crosses the
// wire neither by value nor as a plain reference: the receiver gets a mirror
// that receives a snapshot of the model and then every change, in order.
//
// The contract between a model and its mirrors is the one the cache package
// implements (cache.Map, cache.Value, and every mirror, which is Cacheable in
// turn so that a relay can republish it):
//
//  1. The model's state is a set of entries, each a key and a value that
//     travel as CBOR. A snapshot is every entry.
//  2. The state changes by ordered changes: each sets or deletes one entry
//     and raises the model's version by one. The model has an epoch, a UUID
//     made when the model is created, so that versions are only ever
//     compared within one model instance.
//  3. A mirror applies the changes in version order, each exactly once; when
//     it cannot (it fell behind, or the epoch changed) it takes a new
//     snapshot and applies the difference from its state instead.
//
// A user-defined model keeps its state in the cache package's models (or
// embeds one) and returns the feed they give from CacheFeed; see the cache
// package documentation.
type Cacheable interface {
	// CacheFeed returns the object that serves the model's mirrors. It is
	// sent by reference inside the Cacheable's wire form; docs/protocol.md
	// describes the methods mirrors call on it.
	CacheFeed() any
}

// CacheMirror is implemented by the types a Cacheable can be received as
// (*cache.Mirror, *cache.ValueMirror). When the broker decodes a Cacheable
// into a pointer to such a type, it makes a new value (or takes the one the
// pointer holds, made with options by cache.NewMirror) and calls AttachCache
// with a reference to the model's feed before the call that carried it
// returns (or, for an argument, before the handler runs): when the caller
// sees the mirror, it already holds the model's state.
type CacheMirror interface {
	// AttachCache subscribes the mirror to feed, a reference to the
	// model's CacheFeed, and returns once the first snapshot is applied or
	// ctx ends.
	AttachCache(ctx context.Context, feed Caller) error
}

// CacheTypes is implemented by models and mirrors that can name the Go
// types of their entries' keys and values. It must work on the type's zero
// value (a nil pointer): introspection calls it without a model at hand, to
// describe a method whose result is a Cacheable.
type CacheTypes interface {
	CacheTypes() (key, value reflect.Type)
}
