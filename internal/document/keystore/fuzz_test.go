package keystore_test

import (
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

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// FuzzImportPKCS12 feeds arbitrary bytes as a PKCS#12 file. Nothing may
// panic and nothing may be stored unless the input decodes with the
// password. The seed is a real file with few KDF iterations, so that
// mutations reach the parser quickly.
func FuzzImportPKCS12(f *testing.F) {
	f.Add(p12WithIterations(f, "fuzz", "fuzz", 1))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x03})
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := keystore.OpenFile(t.TempDir(), "pw")
		if err != nil {
			t.Fatal(err)
		}
		err = ks.ImportPKCS12("x", data, "fuzz")
		labels, lerr := ks.List()
		if lerr != nil {
			t.Fatal(lerr)
		}
		if err != nil && len(labels) != 0 {
			t.Fatalf("failed import (%v) left %v behind", err, labels)
		}
		if err == nil && len(labels) != 1 {
			t.Fatalf("import succeeded but store holds %v", labels)
		}
		if err != nil && !errors.Is(err, keystore.ErrWrongPassword) && !errors.Is(err, keystore.ErrMalformed) &&
			!errors.Is(err, keystore.ErrKeyMismatch) && !errors.Is(err, keystore.ErrUnsupported) {
			t.Fatalf("unclassified error: %v", err)
		}
	})
}

// p12WithIterations is a fresh P-256 credential as a Modern2023 PKCS#12
// file with the given PBKDF2 iteration count.
func p12WithIterations(tb testing.TB, cn, password string, iterations int) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	data, err := pkcs12.Modern2023.WithIterations(iterations).Encode(key, cert, nil, password)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}
