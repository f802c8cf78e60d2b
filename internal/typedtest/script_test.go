package typedtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/tether-go/tether/cache"
	"github.com/tether-go/tether/remoteable"
)

// script is the code under test: it is written against Users alone and
// returns a transcript of what it saw, so that runs against the local
// manager and against stubs can be compared line by line. It uses every
// shape a typed reference has: a plain result, a registered error, a
// result of interface type (and that result sent home), a typed callback,
// and a model declared as a cache.View.
func script(ctx context.Context, users Users) ([]string, error) {
	r := &run{users: users}
	for _, step := range []func(context.Context) error{r.lookups, r.login, r.model} {
		if err := step(ctx); err != nil {
			return r.lines, err
		}
	}
	return r.lines, nil
}

// run is what the steps of script share.
type run struct {
	users Users
	sess  Session
	lines []string
}

// say adds a line to the transcript.
func (r *run) say(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// lookups gets a user, and one that does not exist.
func (r *run) lookups(ctx context.Context) error {
	u, err := r.users.Get(ctx, "alice")
	if err != nil {
		return err
	}
	r.say("Get(alice) = %s <%s>", u.Name, u.Email)
	_, err = r.users.Get(ctx, "nobody")
	if err == nil {
		return errors.New("Get(nobody) succeeded")
	}
	r.say("Get(nobody) fails; errors.Is(err, ErrNoSuchUser) = %v", errors.Is(err, ErrNoSuchUser))
	return nil
}

// login opens a session (a result of interface type) and sends it home.
func (r *run) login(ctx context.Context) error {
	s, err := r.users.Login(ctx, "alice")
	if err != nil {
		return err
	}
	name, err := s.Name(ctx)
	if err != nil {
		return err
	}
	r.say("Login(alice) = a Session of %s", name)
	own, err := r.users.Owns(ctx, s)
	if err != nil {
		return err
	}
	r.say("Owns(that session) = %v", own)
	r.sess = s
	return nil
}

// model follows the directory while changes are made through the session
// and the manager, with a watcher of ours hearing of each; it prints the
// model's events once it has received them all, so that the transcript
// does not depend on when a mirror's events arrive.
func (r *run) model(ctx context.Context) error {
	dir, err := r.users.Directory(ctx)
	if err != nil {
		return err
	}
	if mir, ok := dir.(*cache.Mirror[string, User]); ok {
		defer mir.Close() // a mirror holds a subscription; the local model is the manager's
	}
	changes := make(chan cache.Change[string, User], 16)
	stop := dir.Changes().Connect(func(c cache.Change[string, User]) { changes <- c })
	defer stop()
	r.say("Directory() = v%d [%s] stale=%v", dir.Version(), entries(dir), dir.Stale())
	if err := r.watch(ctx); err != nil {
		return err
	}
	for range 2 {
		select {
		case c := <-changes:
			r.say("directory change: %s", describe(c))
		case <-ctx.Done():
			return fmt.Errorf("waiting for the directory's changes (at v%d): %w", dir.Version(), ctx.Err())
		}
	}
	r.say("Directory now v%d [%s] stale=%v", dir.Version(), entries(dir), dir.Stale())
	return nil
}

// watch passes a watcher of ours to Watch and makes two changes, each of
// which the manager tells the watcher of before the call returns.
func (r *run) watch(ctx context.Context) error {
	w := &watcher{}
	if err := r.users.Watch(ctx, w); err != nil {
		return err
	}
	if err := r.sess.SetEmail(ctx, "alice@example.net"); err != nil {
		return err
	}
	r.say("SetEmail(alice@example.net): the watcher heard %q", w.take())
	if err := r.users.Remove(ctx, "bob"); err != nil {
		return err
	}
	r.say("Remove(bob): the watcher heard %q", w.take())
	return nil
}

// watcher is the caller's Watcher: passed to a stub, it travels by
// reference and the manager calls it back.
type watcher struct {
	remoteable.Referenceable
	mu    sync.Mutex
	heard []string
}

// Seen records event.
func (w *watcher) Seen(_ context.Context, event string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.heard = append(w.heard, event)
	return nil
}

// take returns what the watcher heard since the last take.
func (w *watcher) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := strings.Join(w.heard, "; ")
	w.heard = nil
	return s
}

// entries prints a model's entries in key order.
func entries(v cache.View[string, User]) string {
	m := map[string]User{}
	v.Range(func(k string, u User) bool { m[k] = u; return true })
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k].Email)
	}
	return b.String()
}

// describe prints a change.
func describe(c cache.Change[string, User]) string {
	if c.Deleted {
		return fmt.Sprintf("v%d delete %s", c.Version, c.Key)
	}
	return fmt.Sprintf("v%d set %s = %s", c.Version, c.Key, c.Value.Email)
}
