package remote_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tether-go/tether/remote"
)

// TestRefMethodSetIsThePublicContract pins *remote.Ref's method set to
// what it was before issue 14: embedding internal/holders.Count to keep
// Exported and Unexported off the documentation must not promote anything
// else (OnLast was, and let any caller replace what a relayed wrapper does
// when its last holder lets go, racing with the broker's Unexported).
// RefHome comes the same way from internal/refhome.Hook, for the broker
// alone: it answers what the reference stands for on a connection.
func TestRefMethodSetIsThePublicContract(t *testing.T) {
	rt := reflect.TypeFor[*remote.Ref]()
	var got []string
	for i := 0; i < rt.NumMethod(); i++ {
		got = append(got, rt.Method(i).Name)
	}
	want := []string{"Cacheable", "Call", "Client", "Describe", "Exported", "RefHome", "Release", "String", "Unexported"}
	slices.Sort(got)
	assert.Equal(t, want, got)
}
