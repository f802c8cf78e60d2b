// Package cborx holds the CBOR primitives Tether's wire is built from: append
// functions for heads and scalars, a bounds-checked Reader, and Validate,
// which checks that a peer's frame is one well-formed item within limits
// before anything else looks at it.
//
// It knows nothing of references or Go types beyond scalars; the broker's
// value codec builds on it. It is internal because its API is shaped by the
// broker's hot path, not by what a user needs.
package cborx
