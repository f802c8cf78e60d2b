// Package holders counts the connections that hold an object for their
// peers: the remoteable.ExportObserver plumbing of a type whose
// documentation must not show it.
//
// A type embeds Count under an unexported alias (type exportCount =
// holders.Count). The broker finds Exported and Unexported in the
// embedding type's method set, as it must to call them, while go doc,
// which lists the methods an embedded type brings only when that type is
// declared in the same package, leaves them off the type's documentation.
// remote.Ref is such a type.
package holders
