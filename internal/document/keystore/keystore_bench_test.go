package keystore_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// BenchmarkSign signs a SHA-256 digest with each key type on each backend.
func BenchmarkSign(b *testing.B) {
	for _, bk := range backends() {
		for _, kt := range []keystore.KeyType{keystore.RSA2048, keystore.ECDSAP256} {
			b.Run(bk.name+"/"+string(kt), func(b *testing.B) {
				ks := bk.open(b)
				label := "bench-" + string(kt)
				cred, err := ks.Generate(label, kt)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { ks.Delete(label) })
				digest := sha256.Sum256([]byte("bench"))
				for b.Loop() {
					if _, err := cred.Signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecrypt unwraps a 32-byte key with RSA-OAEP on each backend
// (SHA-1, the only OAEP hash SoftHSM 2.6.1 implements).
func BenchmarkDecrypt(b *testing.B) {
	for _, bk := range backends() {
		b.Run(bk.name, func(b *testing.B) {
			ks := bk.open(b)
			cred, err := ks.Generate("bench-dec", keystore.RSA2048)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ks.Delete("bench-dec") })
			dec, err := cred.Decrypter()
			if err != nil {
				b.Fatal(err)
			}
			ct, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, cred.Signer.Public().(*rsa.PublicKey), make([]byte, 32), nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := dec.Decrypt(rand.Reader, ct, &rsa.OAEPOptions{Hash: crypto.SHA1}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLoadFileCredential measures opening a PKCS#12 credential, which
// is dominated by the PBKDF2 iterations.
func BenchmarkLoadFileCredential(b *testing.B) {
	ks, err := keystore.OpenFile(b.TempDir(), "pw")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ks.Generate("c", keystore.ECDSAP256); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ks.Credential("c"); err != nil {
			b.Fatal(err)
		}
	}
}
