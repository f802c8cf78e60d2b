// Package refhome lets a lasting reference (remote.Ref) go home when it is
// sent, at any depth of a value, to the connection its target lives on:
// the broker's encoder then writes the target itself (a reference the
// receiver resolves to its own object), not an export of the wrapper,
// which would make the owner call itself through the sender.
//
// A type embeds Hook under an unexported alias (type homing =
// refhome.Hook), as remote.Ref embeds holders.Count: the broker finds
// RefHome in the embedding type's method set, and go doc leaves it off
// the type's documentation.
package refhome

import "github.com/tether-go/tether/broker"

// Hook answers the broker's question "what does this object stand for on
// c?" with the function Set gave it. Its zero value answers nil.
type Hook struct {
	home func(c *broker.Conn) *broker.Ref
	gone func() error
}

// Set makes h answer with fn. It must be called before the object is
// first sent. It is a function, not a method, so that a type embedding
// Hook gets only RefHome in its method set.
func Set(h *Hook, fn func(c *broker.Conn) *broker.Ref) { h.home = fn }

// SetGone makes h say, with fn, why the object cannot be sent any more (a
// lasting reference whose client was closed would reach the receiver as a
// reference that always fails). Like Set, it must be called before the
// object is first sent.
func SetGone(h *Hook, fn func() error) { h.gone = fn }

// RefHome returns the reference on c that the object stands for, or nil
// when it stands for none there: the broker then exports the object. The
// error, when not nil, says why the object cannot be sent at all (see
// SetGone). One method answers both, so that the embedding type's method
// set gains nothing else.
func (h *Hook) RefHome(c *broker.Conn) (*broker.Ref, error) {
	if h.gone != nil {
		if err := h.gone(); err != nil {
			return nil, err
		}
	}
	if h.home == nil {
		return nil, nil
	}
	return h.home(c), nil
}
