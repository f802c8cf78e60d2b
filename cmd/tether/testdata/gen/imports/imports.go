// Package imports holds tether gen's golden case for types from other
// packages: two packages with the same name, a package whose name the
// package itself uses, and imports that only the interface's other
// methods need.
package imports

import (
	stdctx "context"
	"net/netip"
	"strings"
	"time"

	"github.com/tether-go/tether/cache"
	amodel "github.com/tether-go/tether/cmd/tether/testdata/gen/imports/a/model"
	"github.com/tether-go/tether/cmd/tether/testdata/gen/imports/b/model"
)

// context is a package-level name: the generated file imports package
// context under another name.
var context = "taken"

// Sync uses types of several packages.
type Sync interface {
	Pull(ctx stdctx.Context, since time.Time) ([]amodel.Item, error)
	Push(ctx stdctx.Context, items map[string]model.Item) error
	Where(ctx stdctx.Context, addr netip.Addr) (cache.View[netip.Addr, *model.Item], error)
	Ping() error
}

// unused keeps the package's own use of its names, and of package strings,
// which no method of Sync needs: the generated file does not import it.
var unused = strings.ToUpper(context)
