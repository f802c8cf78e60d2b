package cache

// ValueSubscribers returns the number of mirrors subscribed to v, for the
// tests: a Value does not export its map.
func ValueSubscribers[T any](v *Value[T]) int { return v.m.Subscribers() }
