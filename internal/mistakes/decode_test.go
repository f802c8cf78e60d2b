package mistakes

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/internal/leakcheck"
	"github.com/tether-go/tether/internal/testkit"
)

// TestStructsFitByFieldName checks guide §1's decoding rules on a real
// call: a field the receiver lacks is skipped, one the sender lacks stays
// zero, names match ignoring case and by tag, a field of the wrong type is
// an error naming the field, and an empty struct fits anything.
func TestStructsFitByFieldName(t *testing.T) {
	leakcheck.Check(t)
	e := start(t)
	shop := e.lookup(t, "shop")
	move := func(arg any) (Point, error) {
		return broker.Call[Point](testkit.Ctx(t, 20*time.Second), shop, "Move", arg)
	}

	p, err := move(struct{ X, Y, Z int }{1, 2, 3})
	require.NoError(t, err, "an extra field is skipped")
	assert.Equal(t, Point{2, 3}, p)
	p, err = move(struct{ X int }{5})
	require.NoError(t, err, "a missing field stays zero")
	assert.Equal(t, Point{6, 1}, p)
	p, err = move(map[string]int{"x": 7, "y": 8})
	require.NoError(t, err, "names match ignoring case")
	assert.Equal(t, Point{8, 9}, p)
	p, err = move(struct {
		A int `cbor:"X"`
		B int `json:"Y"`
	}{3, 4})
	require.NoError(t, err, "names come from tags")
	assert.Equal(t, Point{4, 5}, p)
	p, err = move(struct{}{})
	require.NoError(t, err, "an empty struct fits anything")
	assert.Equal(t, Point{1, 1}, p)

	_, err = move(struct {
		X string
		Y int
	}{"one", 2})
	assert.ErrorIs(t, err, broker.ErrBadArguments)
	assert.Equal(t, broker.InvalidArgument, broker.CodeOf(err))
	if err != nil {
		assert.Contains(t, err.Error(), "Point.X", "the error names the field")
		assert.Equal(t, 1, strings.Count(err.Error(), "tether:"), err.Error())
	}
}
