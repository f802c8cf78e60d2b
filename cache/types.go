package cache

import "reflect"

// CacheTypes implements remoteable.CacheTypes, so that a method returning a
// Map describes its entries. It works on a nil *Map.
func (*Map[K, V]) CacheTypes() (key, value reflect.Type) {
	return reflect.TypeFor[K](), reflect.TypeFor[V]()
}

// CacheTypes implements remoteable.CacheTypes. It works on a nil *Mirror.
func (*Mirror[K, V]) CacheTypes() (key, value reflect.Type) {
	return reflect.TypeFor[K](), reflect.TypeFor[V]()
}

// CacheTypes implements remoteable.CacheTypes: a Value's one entry has the
// key struct{}. It works on a nil *Value.
func (*Value[T]) CacheTypes() (key, value reflect.Type) {
	return reflect.TypeFor[struct{}](), reflect.TypeFor[T]()
}

// CacheTypes implements remoteable.CacheTypes. It works on a nil
// *ValueMirror.
func (*ValueMirror[T]) CacheTypes() (key, value reflect.Type) {
	return reflect.TypeFor[struct{}](), reflect.TypeFor[T]()
}
