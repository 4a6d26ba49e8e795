package keystore_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/e2sgate/e2sgate/internal/keystore"
)

// TestImportRefusesHugeIterationCounts patches the iteration counts of a
// PKCS#12 file (65536, DER 02 03 01 00 00) to 8388607 (02 03 7f ff ff,
// same length) in the MAC, the certificate bag's or the key bag's PBKDF2
// parameters; each file must be refused as malformed before any key
// derivation runs.
func TestImportRefusesHugeIterationCounts(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "iter"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	data, err := pkcs12.Modern2023.WithIterations(65536).Encode(key, cert, nil, "pw")
	if err != nil {
		t.Fatal(err)
	}
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
