package keystore_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

type backend struct {
	name string
	open func(t testing.TB) keystore.Keystore
}

func backends() []backend {
	return []backend{
		{"file", func(t testing.TB) keystore.Keystore {
			ks, err := keystore.OpenFile(t.TempDir(), "correct horse battery staple")
			if err != nil {
				t.Fatal(err)
			}
			return ks
		}},
		{"pkcs11", func(t testing.TB) keystore.Keystore {
			requireSoftHSM(t)
			ks, err := keystore.OpenPKCS11(keystore.PKCS11Config{Module: softhsmModule, TokenLabel: tokenLabel, PIN: tokenPIN})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				// Leave the shared token empty for the next test.
				labels, _ := ks.List()
				for _, l := range labels {
					_ = ks.Delete(l)
				}
				_ = ks.Close()
			})
			return ks
		}},
	}
}

// TestGenerateSignReload generates each key type on each backend, signs
// through the credential's crypto.Signer, reloads it and checks that the
// signature verifies against the reloaded chain's leaf.
func TestGenerateSignReload(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ks := b.open(t)
			for _, kt := range []keystore.KeyType{keystore.RSA2048, keystore.ECDSAP256, keystore.ECDSAP384} {
				t.Run(string(kt), func(t *testing.T) {
					label := "gen-" + string(kt)
					cred, err := ks.Generate(label, kt)
					if err != nil {
						t.Fatal(err)
					}
					digest := sha256.Sum256([]byte("offer 4711"))
					sig, err := cred.Signer.Sign(rand.Reader, digest[:], crypto.SHA256)
					if err != nil {
						t.Fatal(err)
					}
					again, err := ks.Credential(label)
					if err != nil {
						t.Fatal(err)
					}
					leaf := again.Certificate()
					if leaf.Subject.CommonName != label {
						t.Fatalf("leaf CN = %q, want %q", leaf.Subject.CommonName, label)
					}
					if err := verify(leaf.PublicKey, digest[:], sig); err != nil {
						t.Fatalf("signature does not verify against reloaded leaf: %v", err)
					}
					if _, err := ks.Generate(label, kt); !errors.Is(err, keystore.ErrExists) {
						t.Fatalf("second Generate: err = %v, want ErrExists", err)
					}
				})
			}
			labels, err := ks.List()
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"gen-ecdsa-p256", "gen-ecdsa-p384", "gen-rsa2048"}
			if !slices.Equal(labels, want) {
				t.Fatalf("List = %q, want %q", labels, want)
			}
		})
	}
}

func TestSetChainAndDelete(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ks := b.open(t)
			cred, err := ks.Generate("merchant", keystore.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			other, err := ks.Generate("other", keystore.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			ca, caKey := newCA(t)
			issued := issue(t, ca, caKey, "merchant.example", cred.Signer.Public())

			tests := []struct {
				name  string
				label string
				chain []*x509.Certificate
				want  error
			}{
				{"foreign leaf", "merchant", []*x509.Certificate{other.Certificate()}, keystore.ErrKeyMismatch},
				{"empty chain", "merchant", nil, keystore.ErrKeyMismatch},
				{"unknown label", "nobody", []*x509.Certificate{issued, ca}, keystore.ErrNotFound},
				{"bad label", "../merchant", []*x509.Certificate{issued, ca}, keystore.ErrInvalidLabel},
				{"issued chain", "merchant", []*x509.Certificate{issued, ca}, nil},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					if err := ks.SetChain(tt.label, tt.chain); !errors.Is(err, tt.want) {
						t.Fatalf("SetChain err = %v, want %v", err, tt.want)
					}
				})
			}
			got, err := ks.Credential("merchant")
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Chain) != 2 || !got.Chain[0].Equal(issued) || !got.Chain[1].Equal(ca) {
				t.Fatalf("chain after SetChain = %d certs, leaf %q", len(got.Chain), got.Chain[0].Subject)
			}

			if err := ks.Delete("merchant"); err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Credential("merchant"); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("Credential after Delete: err = %v, want ErrNotFound", err)
			}
			if err := ks.Delete("merchant"); !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
			}
			if labels, _ := ks.List(); !slices.Equal(labels, []string{"other"}) {
				t.Fatalf("List after Delete = %q", labels)
			}
		})
	}
}

func TestDecrypter(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ks := b.open(t)
			rsaCred, err := ks.Generate("rsa", keystore.RSA2048)
			if err != nil {
				t.Fatal(err)
			}
			ecCred, err := ks.Generate("ec", keystore.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ecCred.Decrypter(); !errors.Is(err, keystore.ErrNotDecrypter) {
				t.Fatalf("ECDSA Decrypter: err = %v, want ErrNotDecrypter", err)
			}
			dec, err := rsaCred.Decrypter()
			if err != nil {
				t.Fatal(err)
			}
			pub := rsaCred.Signer.Public().(*rsa.PublicKey)
			secret := []byte("content-encryption key")
			// SoftHSM 2.6.1 implements RSA-OAEP with SHA-1 only; the file
			// backend (Go's rsa package) does any hash.
			ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, secret, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1})
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("OAEP decrypt = %q, %v", got, err)
			}
			ct15, err := rsa.EncryptPKCS1v15(rand.Reader, pub, secret)
			if err != nil {
				t.Fatal(err)
			}
			got, err = dec.Decrypt(rand.Reader, ct15, nil)
			if err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("PKCS#1 v1.5 decrypt = %q, %v", got, err)
			}
			ct[len(ct)/2] ^= 1
			if _, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1}); err == nil {
				t.Fatal("tampered OAEP ciphertext decrypted")
			}
		})
	}
}

func TestInvalidLabels(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ks := b.open(t)
			for _, label := range []string{"", "../x", "a/b", ".hidden", "sp ace", string(make([]byte, 65))} {
				if _, err := ks.Generate(label, keystore.ECDSAP256); !errors.Is(err, keystore.ErrInvalidLabel) {
					t.Errorf("Generate(%q): err = %v, want ErrInvalidLabel", label, err)
				}
			}
			if _, err := ks.Generate("x", keystore.KeyType("dsa1024")); !errors.Is(err, keystore.ErrUnsupported) {
				t.Errorf("Generate(dsa1024): err = %v, want ErrUnsupported", err)
			}
		})
	}
}

func verify(pub crypto.PublicKey, digest, sig []byte) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return errors.New("ecdsa: bad signature")
		}
		return nil
	}
	return errors.New("unknown key type")
}

func newCA(t *testing.T) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Test Trust Centre"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey crypto.Signer, cn string, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
