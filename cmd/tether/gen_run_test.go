package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/cmd/tether/testdata/gen/basic"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/internal/testkit/brokertest"
	"github.com/tether-go/tether/registry"
	"github.com/tether-go/tether/remoteable"
)

// errNoUser is what genUsers.Get returns for a name it does not know.
var errNoUser = errors.New("no such user")

func init() { remoteable.RegisterError("gentest.no-user", errNoUser) }

// genUsers serves the methods of basic.Users that need nothing beyond
// Call: the generated stub's calls arrive here as a handwritten Call's
// would. (Its Model returns the *cache.Map itself, which is what a
// cache.View result carries.)
type genUsers struct {
	mu    sync.Mutex
	log   []string
	model *cache.Map[string, basic.User]
}

// record notes a call the test then checks arrived as sent.
func (g *genUsers) record(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, fmt.Sprintf(format, args...))
}

// Get knows alice only.
func (g *genUsers) Get(ctx context.Context, name string) (basic.User, error) {
	if name != "alice" {
		return basic.User{}, fmt.Errorf("get %s: %w", name, errNoUser)
	}
	return basic.User{Name: "alice", Age: 30}, nil
}

// Delete records whether the caller's deadline came along.
func (g *genUsers) Delete(ctx context.Context, name string) error {
	_, deadline := ctx.Deadline()
	g.record("Delete %s deadline=%v", name, deadline)
	return nil
}

// Count takes no context.
func (g *genUsers) Count() (int, error) { return 7, nil }

// Ping fails with a registered error.
func (g *genUsers) Ping() error { return errNoUser }

// Add records its variadic arguments.
func (g *genUsers) Add(ctx context.Context, xs ...int) error {
	g.record("Add %v", xs)
	return nil
}

// Tag records its fixed and variadic arguments.
func (g *genUsers) Tag(ctx context.Context, name string, tags ...string) (int, error) {
	g.record("Tag %s %q", name, tags)
	return len(tags), nil
}

// Log records variadic arguments of type any.
func (g *genUsers) Log(vals ...any) error {
	g.record("Log %v", vals)
	return nil
}

// Model returns the model, which arrives as a mirror.
func (g *genUsers) Model(ctx context.Context) (*cache.Map[string, basic.User], error) {
	return g.model, nil
}

// Lookup returns the users by of names.
func (g *genUsers) Lookup(ctx context.Context, names []string, by map[string]*basic.User) ([]basic.User, error) {
	var us []basic.User
	for _, n := range names {
		us = append(us, *by[n])
	}
	return us, nil
}

// TestGenStubOverConnection calls a generated stub over real TCP and
// checks that each shape of method arrives as a handwritten Call would
// send it: variadic arguments one by one, the context's deadline, results,
// registered errors, and a model received as a mirror behind its View.
func TestGenStubOverConnection(t *testing.T) {
	leakcheck.Check(t)
	mgr := &genUsers{model: cache.NewMap[string, basic.User]()}
	require.NoError(t, mgr.model.Set("bob", basic.User{Name: "bob", Age: 40}))
	reg := registry.New()
	require.NoError(t, reg.Register("users", mgr))
	_, addr := brokertest.Serve(t, reg)
	conn := brokertest.Dial(t, addr)
	ctx := testkit.Ctx(t, 30*time.Second)

	var ref *broker.Ref
	require.NoError(t, conn.Root().Call(ctx, "Lookup", &ref, "users"))
	users, err := remoteable.As[basic.Users](ref)
	require.NoError(t, err)
	stub, ok := users.(remoteable.Stub)
	require.True(t, ok, "%T is not a remoteable.Stub", users)
	assert.Same(t, ref, stub.TetherCaller())

	u, err := users.Get(ctx, "alice")
	require.NoError(t, err)
	assert.Equal(t, basic.User{Name: "alice", Age: 30}, u)
	_, err = users.Get(ctx, "zoe")
	assert.ErrorIs(t, err, errNoUser)
	n, err := users.Count()
	require.NoError(t, err)
	assert.Equal(t, 7, n)
	assert.ErrorIs(t, users.Ping(), errNoUser)

	require.NoError(t, users.Delete(ctx, "carol"))
	require.NoError(t, users.Add(ctx, 1, 2, 3))
	require.NoError(t, users.Add(ctx))
	n, err = users.Tag(ctx, "dave", "x", "y")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	require.NoError(t, users.Log("one", 2))
	assert.Equal(t, []string{"Delete carol deadline=true", "Add [1 2 3]", "Add []", `Tag dave ["x" "y"]`, "Log [one 2]"}, mgr.log)

	got, err := users.Lookup(ctx, []string{"bob"}, map[string]*basic.User{"bob": {Name: "bob", Age: 40}})
	require.NoError(t, err)
	assert.Equal(t, []basic.User{{Name: "bob", Age: 40}}, got)

	view, err := users.Model(ctx)
	require.NoError(t, err)
	mir, ok := view.(*cache.Mirror[string, basic.User])
	require.True(t, ok, "Model returned %T", view)
	t.Cleanup(func() { mir.Close() })
	v, ok := view.Get("bob")
	assert.True(t, ok)
	assert.Equal(t, 40, v.Age)

	// A failed Model returns a nil View, not a View holding a nil mirror.
	conn.Close()
	<-conn.Done()
	view, err = users.Model(ctx)
	assert.ErrorIs(t, err, broker.ErrDeadReference)
	assert.True(t, view == nil, "a failed Model returned %#v", view)
}

// BenchmarkGenStub compares a call through a generated stub with the
// same call made with Call, over real TCP: the stub should cost no more
// than one allocation beyond Call.
func BenchmarkGenStub(b *testing.B) {
	reg := registry.New()
	require.NoError(b, reg.Register("users", &genUsers{model: cache.NewMap[string, basic.User]()}))
	_, addr := brokertest.Serve(b, reg)
	conn := brokertest.Dial(b, addr)
	ctx := testkit.Ctx(b, time.Minute)
	var ref *broker.Ref
	require.NoError(b, conn.Root().Call(ctx, "Lookup", &ref, "users"))
	users, err := remoteable.As[basic.Users](ref)
	require.NoError(b, err)
	// Both pass the name from a variable, as a program does: a constant
	// would save Call the allocation that boxes the string.
	names := []string{"alice"}
	b.Run("Call", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var u basic.User
			if err := ref.Call(ctx, "Get", &u, names[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Stub", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := users.Get(ctx, names[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
