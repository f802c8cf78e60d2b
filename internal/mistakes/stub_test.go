package mistakes

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
	"github.com/tether-go/tether/remoteable"
)

// Drawers is an interface nobody wrote a stub for.
type Drawers interface {
	Drawer(ctx context.Context) (Opener, error)
}

// Opener is an interface a drawer implements and nothing else here.
type Opener interface {
	Open(ctx context.Context) error
}

// TestTypedReferenceMistakes: the mistakes of guide §12's typed-reference
// rows, each with its sentinel, code and what to do.
func TestTypedReferenceMistakes(t *testing.T) {
	leakcheck.Check(t)
	rows := []mistake{
		{"no stub registered for the interface", func(t *testing.T, e *env) error {
			addr, _, _ := serveDesk(t)
			_, r := dialDesk(t, addr)
			_, err := remoteable.As[Drawers](r)
			return err
		}, remoteable.ErrNoStub, broker.FailedPrecondition, []string{"mistakes.Drawers", "tether gen -type Drawers"}},
		{"a reply into an interface without a stub", func(t *testing.T, e *env) error {
			addr, _, _ := serveDesk(t)
			_, r := dialDesk(t, addr)
			var o Opener
			return r.Call(testkit.Ctx(t, 20*time.Second), "Drawer", &o)
		}, remoteable.ErrNoStub, broker.FailedPrecondition, []string{"mistakes.Opener", "tether gen -type Opener"}},
		{"a value that is neither the interface nor a reference", func(t *testing.T, e *env) error {
			_, err := remoteable.As[Opener]("a drawer")
			return err
		}, remoteable.ErrNotCaller, broker.InvalidArgument, []string{"string does not implement mistakes.Opener"}},
	}
	for _, m := range rows {
		t.Run(m.name, func(t *testing.T) {
			err := m.do(t, nil)
			require.Error(t, err)
			assert.True(t, errors.Is(err, m.is), "%v", err)
			assert.Equal(t, m.code, broker.CodeOf(err), "code of %v", err)
			msg := err.Error()
			assert.True(t, strings.HasPrefix(msg, "tether: "), "message does not start with \"tether: \": %s", msg)
			assert.LessOrEqual(t, strings.Count(msg, "tether:"), 1, "a repeated prefix: %s", msg)
			for _, s := range m.says {
				assert.Contains(t, msg, s)
			}
		})
	}
}
