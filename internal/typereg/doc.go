// Package typereg holds the process-wide tables that remoteable writes and
// the broker reads: Copyable types by name, registered errors, typed stubs
// by interface (and Convert, which gives a reference an interface's face),
// the marker interface of Referenceable types, and context keys shared by
// both.
//
// Tables are copy-on-write: registration is rare (init time) and lookups are
// on every call's hot path, so lookups take no lock.
package typereg
