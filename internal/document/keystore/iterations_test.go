package keystore_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// TestImportRefusesHugeIterationCounts patches the iteration counts of a
// PKCS#12 file (65536, DER 02 03 01 00 00) to 8388607 (02 03 7f ff ff,
// same length) in the MAC, the certificate bag's or the key bag's PBKDF2
// parameters; each file must be refused as malformed before any key
// derivation runs.
func TestImportRefusesHugeIterationCounts(t *testing.T) {
	data := p12WithIterations(t, "iter", "pw", 65536)
	small, huge := []byte{0x02, 0x03, 0x01, 0x00, 0x00}, []byte{0x02, 0x03, 0x7f, 0xff, 0xff}
	var at []int
	for i := 0; ; {
		j := bytes.Index(data[i:], small)
		if j < 0 {
			break
		}
		at = append(at, i+j)
		i += j + 1
	}
	if len(at) != 3 {
		t.Fatalf("found %d iteration counts, want 3 (certificate bag, key bag, MAC)", len(at))
	}
	tests := []struct {
		name  string
		patch []int
		want  error
	}{
		{"unpatched", nil, nil},
		{"certificate bag", at[:1], keystore.ErrMalformed},
		{"key bag", at[1:2], keystore.ErrMalformed},
		{"MAC", at[2:], keystore.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := bytes.Clone(data)
			for _, i := range tt.patch {
				copy(d[i:], huge)
			}
			ks, err := keystore.OpenFile(t.TempDir(), "store-pw")
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.ImportPKCS12("x", d, "pw"); !errors.Is(err, tt.want) {
				t.Fatalf("ImportPKCS12 err = %v, want %v", err, tt.want)
			}
		})
	}
}
