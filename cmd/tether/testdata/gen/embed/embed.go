// Package embed holds tether gen's golden case for interfaces that embed
// others: the stub has the flattened method set, in Go's order.
package embed

import (
	"context"
	"io"
)

// Reader is embedded by Store.
type Reader interface {
	Read(ctx context.Context, key string) ([]byte, error)
}

// Store embeds a local interface and one from the standard library.
type Store interface {
	Reader
	io.Closer
	Write(ctx context.Context, key string, value []byte) error
}

// Nothing has no methods: its stub only gives back its reference.
type Nothing interface{}
