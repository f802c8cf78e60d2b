package broker

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tether-go/tether/internal/cborx"
)

// preEncoded is CBOR its maker encoded and vouches for (the encodedCBOR
// seam).
type preEncoded []byte

func (p preEncoded) EncodedCBOR(cborx.Trusted) []byte { return p }

// selfDecoded decodes itself from a validated item (the validatedDecoder
// seam), recording what it was given.
type selfDecoded struct{ got []byte }

var errSelfDecoded = errors.New("selfDecoded: refused")

func (s *selfDecoded) DecodeValidated(_ cborx.Trusted, data []byte) (int, error) {
	r := cborx.NewReader(data)
	if err := r.Skip(); err != nil {
		return 0, err
	}
	item := r.Bytes(0)
	if len(item) == 1 {
		return 0, errSelfDecoded
	}
	s.got = append([]byte(nil), item...)
	return len(item), nil
}

// TestEncodedCBORWrittenAsIs: a value of the encodedCBOR seam, encoded
// as a whole (as a call's argument is), goes into the message byte for
// byte.
func TestEncodedCBORWrittenAsIs(t *testing.T) {
	item := cborx.AppendText(cborx.AppendArray(nil, 2), "a")
	item = cborx.AppendUint(item, 7)
	b, err := Marshal(preEncoded(item))
	require.NoError(t, err)
	assert.Equal(t, item, b)
}

// TestValidatedDecoderGetsTheItem: a value of the validatedDecoder seam is
// handed its item's bytes, after the message was validated, and its error
// is the decoding's.
func TestValidatedDecoderGetsTheItem(t *testing.T) {
	item := cborx.AppendText(cborx.AppendArray(nil, 2), "a")
	item = cborx.AppendUint(item, 7)
	var s selfDecoded
	require.NoError(t, Unmarshal(item, &s))
	assert.Equal(t, item, s.got)

	require.ErrorIs(t, Unmarshal(cborx.AppendUint(nil, 1), &s), errSelfDecoded)

	bad := append(cborx.AppendArray(nil, 1), 0x62, 0xff, 0xfe) // text that is not UTF-8
	s = selfDecoded{}
	require.Error(t, Unmarshal(bad, &s), "the message is validated first")
	assert.Nil(t, s.got)
}

// userEncoded is a user's type that happens to have a method named like
// the encodedCBOR seam's, without the seal: its bytes must not be trusted.
type userEncoded []byte

func (u userEncoded) EncodedCBOR() []byte { return []byte{0xff} }

// TestSeamsNeedTheSeal: a user's type with an EncodedCBOR method of its own
// is encoded as any other value (a byte string here), never written as the
// bytes it returns, which the peer would refuse with the whole message.
func TestSeamsNeedTheSeal(t *testing.T) {
	b, err := Marshal(userEncoded("hi"))
	require.NoError(t, err)
	assert.Equal(t, []byte{0x42, 'h', 'i'}, b)
}
