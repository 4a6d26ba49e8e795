package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// TestEncryptDecryptedByOpenSSL encrypts with Go and decrypts with openssl.
func TestEncryptDecryptedByOpenSSL(t *testing.T) {
	p := getPKI(t)
	for _, cph := range []Cipher{AES256GCM, AES256CBC} {
		for _, kind := range []string{"rsa", "p256", "p384"} {
			for _, ski := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/%s/ski=%v", cph, kind, ski), func(t *testing.T) {
					// Several recipients; the one under test is in the middle.
					others := []string{"rsa", "p256"}
					recips := []*x509.Certificate{p.ids[others[0]].cert(), p.ids[kind].cert(), p.ids[others[1]].cert()}
					der, err := Encrypt(testContent, recips, EncryptOptions{Cipher: cph, SubjectKeyID: ski})
					if err != nil {
						t.Fatal(err)
					}
					for _, who := range []string{kind, others[0], others[1]} {
						id := p.ids[who]
						out := filepath.Join(t.TempDir(), "out")
						if _, err := openssl(t, "cms", "-decrypt", "-binary", "-inform", "DER",
							"-in", writeFile(t, "enc.der", der), "-recip", id.certFile, "-inkey", id.keyFile,
							"-out", out); err != nil {
							t.Fatalf("%s: %v", who, err)
						}
						got, err := os.ReadFile(out)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, testContent) {
							t.Fatalf("%s: openssl decrypted %q", who, got)
						}
						got, err = Decrypt(der, id.cert(), id.key)
						if err != nil {
							t.Fatalf("%s: %v", who, err)
						}
						if !bytes.Equal(got, testContent) {
							t.Fatalf("%s: Go decrypted %q", who, got)
						}
					}
				})
			}
		}
	}
}

// TestDecryptOpenSSLMessage encrypts with openssl and decrypts with Go.
func TestDecryptOpenSSLMessage(t *testing.T) {
	p := getPKI(t)
	tests := []struct {
		name string
		id   string
		args []string
	}{
		{"gcm/rsa-oaep-sha256", "rsa", []string{"-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep",
			"-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"}},
		{"gcm/rsa-oaep-sha1", "rsa", []string{"-aes-256-gcm", "-keyopt", "rsa_padding_mode:oaep"}},
		{"gcm/rsa-pkcs1v15", "rsa", []string{"-aes-256-gcm"}},
		{"cbc/rsa-pkcs1v15", "rsa", []string{"-aes-256-cbc"}},
		{"cbc/rsa-oaep-sha256", "rsa", []string{"-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep",
			"-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"}},
		{"gcm/p256-sha256kdf", "p256", []string{"-aes-256-gcm", "-keyopt", "ecdh_kdf_md:sha256"}},
		{"gcm/p256-sha1kdf", "p256", []string{"-aes-256-gcm"}},
		{"cbc/p384-sha384kdf", "p384", []string{"-aes-256-cbc", "-keyopt", "ecdh_kdf_md:sha384"}},
		{"gcm/p256-ski", "p256", []string{"-aes-256-gcm", "-keyid", "-keyopt", "ecdh_kdf_md:sha256"}},
		{"gcm/rsa-ski-streamed", "rsa", []string{"-aes-256-gcm", "-keyid", "-stream"}},
		{"cbc/rsa-streamed", "rsa", []string{"-aes-256-cbc", "-stream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := p.ids[tt.id]
			out := filepath.Join(t.TempDir(), "enc.der")
			args := append([]string{"cms", "-encrypt", "-binary", "-in", writeFile(t, "c", testContent),
				"-outform", "DER", "-out", out, "-recip", id.certFile}, tt.args...)
			if _, err := openssl(t, args...); err != nil {
				t.Fatal(err)
			}
			der, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decrypt(der, id.cert(), id.key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, testContent) {
				t.Fatalf("decrypted %q", got)
			}
		})
	}
}

// opaqueDecrypter hides the concrete key type, as a token key would.
type opaqueDecrypter struct{ k crypto.Decrypter }

func (o opaqueDecrypter) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueDecrypter) Decrypt(r io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return o.k.Decrypt(r, msg, opts)
}

func TestDecryptThroughInterfaces(t *testing.T) {
	p := getPKI(t)
	ecKey, err := p.ids["p256"].key.(interface {
		ECDH() (*ecdh.PrivateKey, error)
	}).ECDH()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		key  crypto.PrivateKey
	}{
		{"crypto.Decrypter", p.ids["rsa"].cert(), opaqueDecrypter{p.ids["rsa"].key.(crypto.Decrypter)}},
		{"crypto.Decrypter without certificate", nil, opaqueDecrypter{p.ids["rsa"].key.(crypto.Decrypter)}},
		{"ecdh.PrivateKey", p.ids["p256"].cert(), ecKey},
	}
	der, err := Encrypt(testContent, []*x509.Certificate{p.ids["p256"].cert(), p.ids["rsa"].cert()}, EncryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decrypt(der, tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, testContent) {
				t.Fatalf("decrypted %q", got)
			}
		})
	}
}

// oaepMessage builds AuthEnvelopedData for an RSA recipient with the given
// RSAES-OAEP parameters, encrypting the CEK with OAEP(hash, mgf).
func oaepMessage(t *testing.T, id *testIdentity, params []byte, h, mgf crypto.Hash) []byte {
	t.Helper()
	cek := make([]byte, 32)
	rand.Read(cek)
	ek, err := rsa.EncryptOAEPWithOptions(rand.Reader, id.cert().PublicKey.(*rsa.PublicKey), cek,
		&rsa.OAEPOptions{Hash: h, MGFHash: mgf})
	if err != nil {
		t.Fatal(err)
	}
	var ri cryptobyte.Builder
	ri.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		certID{issuerSerial: &issuerAndSerial{rawIssuer: id.cert().RawIssuer, serial: id.cert().SerialNumber}}.add(b)
		algorithmIdentifier{oid: oidRSAESOAEP, params: params}.add(b)
		b.AddASN1OctetString(ek)
	})
	nonce := make([]byte, 12)
	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCM(block)
	sealed := aead.Seal(nil, nonce, testContent, nil)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		addSet(b, [][]byte{ri.BytesOrPanic()})
		addEncryptedContentInfo(b, oidData, algorithmIdentifier{oid: oidAES256GCM, params: gcmParams(nonce)}, sealed[:len(testContent)])
		b.AddASN1OctetString(sealed[len(testContent):])
	})
	return contentInfo(oidAuthEnvelopedData, b.BytesOrPanic())
}

func oaepParamsFor(hash, mgf bool) []byte {
	sha256Alg := algorithmIdentifier{oid: oidSHA256}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if hash {
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) { sha256Alg.add(b) })
		}
		if mgf {
			b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
				algorithmIdentifier{oid: oidMGF1, params: marshalAlgorithm(sha256Alg)}.add(b)
			})
		}
	})
	return b.BytesOrPanic()
}

func TestDecryptFailures(t *testing.T) {
	p := getPKI(t)
	rsaID, ecID := p.ids["rsa"], p.ids["p256"]
	enc := func(t *testing.T, cph Cipher, recips ...*testIdentity) []byte {
		t.Helper()
		var certs []*x509.Certificate
		for _, r := range recips {
			certs = append(certs, r.cert())
		}
		der, err := Encrypt(testContent, certs, EncryptOptions{Cipher: cph})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	flipAt := func(der []byte, i int) []byte {
		c := bytes.Clone(der)
		c[i] ^= 0x80
		return c
	}
	otherRSA := p.noSign // another RSA key, not a recipient
	tests := []struct {
		name string
		der  func(t *testing.T) []byte
		cert *x509.Certificate
		key  crypto.PrivateKey
		want error
	}{
		{"wrong RSA certificate", func(t *testing.T) []byte { return enc(t, AES256GCM, rsaID) },
			otherRSA.cert(), otherRSA.key, ErrNotRecipient},
		{"wrong RSA key without certificate", func(t *testing.T) []byte { return enc(t, AES256GCM, rsaID) },
			nil, otherRSA.key, ErrDecrypt},
		{"wrong EC recipient", func(t *testing.T) []byte { return enc(t, AES256GCM, ecID) },
			p.ids["p384"].cert(), p.ids["p384"].key, ErrNotRecipient},
		{"EC key with RSA-only message", func(t *testing.T) []byte { return enc(t, AES256GCM, rsaID) },
			ecID.cert(), ecID.key, ErrNotRecipient},
		{"tampered GCM ciphertext", func(t *testing.T) []byte {
			der := enc(t, AES256GCM, rsaID)
			return flipAt(der, len(der)-18-len(testContent)/2)
		}, rsaID.cert(), rsaID.key, ErrDecrypt},
		{"tampered GCM tag", func(t *testing.T) []byte {
			der := enc(t, AES256GCM, ecID)
			return flipAt(der, len(der)-1)
		}, ecID.cert(), ecID.key, ErrDecrypt},
		{"tampered wrapped key", func(t *testing.T) []byte {
			der := enc(t, AES256CBC, ecID)
			return flipAt(der, bytes.Index(der, []byte{0x04, 0x28})+5) // OCTET STRING of 40 bytes
		}, ecID.cert(), ecID.key, ErrDecrypt},
		{"missing MGF1 hash", func(t *testing.T) []byte {
			return oaepMessage(t, rsaID, oaepParamsFor(true, false), crypto.SHA256, crypto.SHA1)
		}, rsaID.cert(), rsaID.key, ErrMissingMGF1},
		{"not enveloped", func(t *testing.T) []byte {
			der, err := Sign(testContent, ecID.key, ecID.chain, SignOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return der
		}, ecID.cert(), ecID.key, ErrUnexpectedContentType},
		{"nested message needs Open", func(t *testing.T) []byte {
			der, err := Protect(testContent, ecID.key, ecID.chain, []*x509.Certificate{rsaID.cert()}, ProtectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return der
		}, rsaID.cert(), rsaID.key, ErrUnexpectedContentType},
		{"truncated", func(t *testing.T) []byte {
			der := enc(t, AES256GCM, rsaID)
			return der[:len(der)-3]
		}, rsaID.cert(), rsaID.key, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decrypt(tt.der(t), tt.cert, tt.key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decrypt error = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("explicit OAEP parameters decrypt", func(t *testing.T) {
		der := oaepMessage(t, rsaID, oaepParamsFor(true, true), crypto.SHA256, crypto.SHA256)
		if _, err := Decrypt(der, rsaID.cert(), rsaID.key); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no recipients", func(t *testing.T) {
		if _, err := Encrypt(testContent, nil, EncryptOptions{}); !errors.Is(err, ErrNoRecipients) {
			t.Fatalf("Encrypt error = %v", err)
		}
	})
	t.Run("recipient certificate without key encipherment", func(t *testing.T) {
		_, err := Encrypt(testContent, []*x509.Certificate{p.expired.cert()}, EncryptOptions{})
		if !errors.Is(err, ErrKeyUsage) {
			t.Fatalf("Encrypt error = %v", err)
		}
	})
}
