package acceptance

//go:generate go run github.com/tether-go/tether/cmd/tether gen -type Inventory

import (
	"context"
	"errors"
	"fmt"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/remoteable"
)

// Inventory is the contract between a store and its callers.
type Inventory interface {
	// Where names the store that answers.
	Where(ctx context.Context) (string, error)
	// Add puts n more of item in stock.
	Add(ctx context.Context, item string, n int) error
	// Count returns how many of item are in stock, or ErrUnknownItem.
	Count(ctx context.Context, item string) (int, error)
	// Stock returns the stock as a model: the store's own map locally, a
	// mirror of it through a stub.
	Stock(ctx context.Context) (cache.View[string, int], error)
}

// ErrUnknownItem is Count's error for an item never added.
var ErrUnknownItem = errors.New("acceptance: unknown item")

func init() { remoteable.RegisterError("acceptance.unknown-item", ErrUnknownItem) }

// Store is an Inventory kept in a cache.Map. It declares nothing beyond
// its methods: no RemoteMethods, nothing idempotent.
type Store struct {
	name  string
	stock *cache.Map[string, int]
}

var _ Inventory = (*Store)(nil)

// NewStore returns an empty store called name.
func NewStore(name string) *Store {
	return &Store{name: name, stock: cache.NewMap[string, int]()}
}

// Where returns the store's name.
func (s *Store) Where(context.Context) (string, error) { return s.name, nil }

// Add adds n to item's count.
func (s *Store) Add(_ context.Context, item string, n int) error {
	have, _ := s.stock.Get(item)
	return s.stock.Set(item, have+n)
}

// Count returns item's count.
func (s *Store) Count(_ context.Context, item string) (int, error) {
	n, ok := s.stock.Get(item)
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrUnknownItem, item)
	}
	return n, nil
}

// Stock returns the model.
func (s *Store) Stock(context.Context) (cache.View[string, int], error) { return s.stock, nil }
