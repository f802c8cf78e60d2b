// Package basic holds the interfaces of tether gen's basic golden case:
// every supported method shape.
package basic

import (
	"context"

	"github.com/tether-go/tether/cache"
)

// User is plain data; its unexported func field does not travel.
type User struct {
	Name string
	Age  int
	hook func()
}

// Users has one method of each supported shape.
type Users interface {
	Get(ctx context.Context, name string) (User, error)
	Delete(ctx context.Context, name string) error
	Count() (int, error)
	Ping() error
	Add(ctx context.Context, xs ...int) error
	Tag(ctx context.Context, name string, tags ...string) (int, error)
	Log(vals ...any) error
	Model(ctx context.Context) (cache.View[string, User], error)
	Login(ctx context.Context, name string) (Session, error)
	Watch(ctx context.Context, w Watcher) error
	Lookup(ctx context.Context, names []string, by map[string]*User) ([]User, error)
}

// Session is returned by reference.
type Session interface {
	Whoami(ctx context.Context) (string, error)
}

// Watcher is passed by reference and called back.
type Watcher interface {
	Changed(ctx context.Context, u User) error
}
