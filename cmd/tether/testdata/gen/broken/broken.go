// Package broken does not type-check: tether gen says so and writes
// nothing.
package broken

// Broken uses a type that does not exist.
type Broken interface {
	Get() (Nowhere, error)
}
