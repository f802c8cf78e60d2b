package cborx

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memoBody returns a body [kind, id, args] whose args array holds n small
// arrays, the last of which is tail: large enough for a Memo.
func memoBody(id uint64, n int, tail []byte) []byte {
	b := AppendArray(nil, 3)
	b = AppendUint(b, 3)
	b = AppendUint(b, id)
	b = AppendArray(b, n+1)
	for i := range n {
		b = AppendArray(b, 2)
		b = AppendText(b, "key")
		b = AppendUint(b, uint64(i))
	}
	return append(b, tail...)
}

// TestMemoAgreesWithValidate checks that a body whose large element a Memo
// remembers validates as it does without the Memo: the same outcome, the
// same tag found, the same limits, however the bytes after a remembered
// prefix differ.
func TestMemoAgreesWithValidate(t *testing.T) {
	good := AppendUint(nil, 7)
	tagged := AppendUint(AppendTag(nil, 59000), 1)
	badUTF8 := []byte{0x62, 0xff, 0xfe}
	deep := []byte(strings.Repeat("\x81", 40) + "\x01")
	var m Memo
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"plain", memoBody(1, 100, good)},
		{"same element, other id", memoBody(2, 100, good)},
		{"tagged", memoBody(3, 100, tagged)},
		{"tagged again", memoBody(4, 100, tagged)},
		{"the remembered prefix, then bad UTF-8", memoBody(5, 100, badUTF8)},
		{"too deep", memoBody(6, 100, deep)},
		{"too deep again", memoBody(7, 100, deep)},
		{"trailing data", append(memoBody(8, 100, good), 0x01)},
		{"truncated", memoBody(9, 100, good)[:300]},
	} {
		for range 3 {
			wantFound, wantErr := ValidateTagged(tc.body, DefaultLimits, 59000)
			found, err := ValidateTaggedMemo(tc.body, DefaultLimits, 59000, &m)
			assert.Equal(t, wantFound, found, tc.name)
			if wantErr == nil {
				assert.NoError(t, err, tc.name)
			} else {
				assert.Error(t, err, tc.name)
				assert.ErrorIs(t, err, errClass(wantErr), tc.name)
			}
		}
	}
}

// errClass returns the sentinel err wraps.
func errClass(err error) error {
	for _, s := range []error{ErrLimit, ErrSyntax} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// TestMemoKeepsLimits checks that a remembered element still counts
// towards the body's total and is not taken for valid under other limits.
func TestMemoKeepsLimits(t *testing.T) {
	var m Memo
	body := memoBody(1, 100, AppendUint(nil, 1))
	_, err := ValidateTaggedMemo(body, DefaultLimits, 59000, &m)
	require.NoError(t, err)
	require.NotNil(t, m.e[0].Load(), "the args array is remembered")

	tight := DefaultLimits
	tight.MaxTotal = 150 // the args array adds 101 + 200 items
	_, err = ValidateTaggedMemo(body, tight, 59000, &m)
	assert.ErrorIs(t, err, ErrLimit)
	_, err = ValidateTaggedMemo(body, tight, 59000, &m)
	assert.ErrorIs(t, err, ErrLimit, "remembered under the default limits, not these")

	few := DefaultLimits
	few.MaxItems = 50
	_, err = ValidateTaggedMemo(body, few, 59000, &m)
	assert.ErrorIs(t, err, ErrLimit)
}

// FuzzMemo checks that validating through a Memo, which has seen a
// well-formed body with a large element just before, agrees with
// ValidateTagged on any body.
func FuzzMemo(f *testing.F) {
	seed := memoBody(1, 100, AppendUint(nil, 1))
	f.Add(seed)
	f.Add(memoBody(2, 100, []byte{0x62, 0xff, 0xfe}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Memo
		_, err := ValidateTaggedMemo(seed, DefaultLimits, 59000, &m)
		require.NoError(t, err)
		wantFound, wantErr := ValidateTagged(b, DefaultLimits, 59000)
		found, err := ValidateTaggedMemo(b, DefaultLimits, 59000, &m)
		if (wantErr == nil) != (err == nil) || (err == nil && wantFound != found) {
			t.Fatalf("with a memo: %v, %v; without: %v, %v", found, err, wantFound, wantErr)
		}
	})
}
