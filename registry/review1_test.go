package registry_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/broker"
	"github.com/tether-go/tether/registry"
)

// TestRegisterRefusesANilPointer: registering a pointer that was never
// set (var svc *accounts; reg.Register("m", svc)) is a mistake found at
// registration, matching broker.ErrNotCallable and saying what to publish;
// it used to be accepted and then every call panicked on the nil receiver.
func TestRegisterRefusesANilPointer(t *testing.T) {
	reg := registry.New()
	var svc *accounts
	err := reg.Register("m", svc)
	require.ErrorIs(t, err, broker.ErrNotCallable)
	assert.EqualError(t, err, `tether: registering "m": a nil *registry_test.accounts has nothing to call: publish a value (&registry_test.accounts{...})`)
	assert.Empty(t, reg.Names())
}
