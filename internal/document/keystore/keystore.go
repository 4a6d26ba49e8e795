// Package keystore holds credentials: a private key and its certificate
// chain. Two backends satisfy one interface:
//
//   - File: one password-protected PKCS#12 file per credential in a
//     directory, encrypted with PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC) and
//     MACed with HMAC-SHA-256, readable by OpenSSL 1.1.1 and later.
//   - PKCS11: keys generated on a PKCS#11 token (an HSM, or SoftHSM2 in
//     tests) as sensitive, non-extractable objects; they never leave it.
//
// Either way a credential gives a crypto.Signer (and a crypto.Decrypter for
// RSA keys) plus the chain, so callers sign and decrypt without knowing where
// the key lives.
package keystore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"time"
)

// Keystore is a set of labelled credentials.
type Keystore interface {
	// Generate makes a new key under label, with a self-signed certificate
	// (CN=label) as its provisional chain until SetChain installs the one
	// a CA issued.
	Generate(label string, kt KeyType) (*Credential, error)
	// Import stores an existing private key and its chain under label.
	Import(label string, key crypto.PrivateKey, chain []*x509.Certificate) error
	// SetChain replaces a credential's chain; the leaf must match the key.
	SetChain(label string, chain []*x509.Certificate) error
	// Credential loads the credential under label.
	Credential(label string) (*Credential, error)
	// List returns the labels in lexical order.
	List() ([]string, error)
	// Delete removes the key and chain under label.
	Delete(label string) error
	// Close releases the backend.
	Close() error
}

// Credential is a private key, usable for signing, and its certificate
// chain, leaf first.
type Credential struct {
	Label  string
	Signer crypto.Signer
	Chain  []*x509.Certificate
}

// Certificate returns the leaf certificate.
func (c *Credential) Certificate() *x509.Certificate {
	if len(c.Chain) == 0 {
		return nil
	}
	return c.Chain[0]
}

// Decrypter returns the key as a crypto.Decrypter; RSA keys only.
func (c *Credential) Decrypter() (crypto.Decrypter, error) {
	if _, ok := c.Signer.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("credential %s: %T: %w", c.Label, c.Signer.Public(), ErrNotDecrypter)
	}
	d, ok := c.Signer.(crypto.Decrypter)
	if !ok {
		return nil, fmt.Errorf("credential %s: %w", c.Label, ErrNotDecrypter)
	}
	return d, nil
}

// KeyType names a key algorithm and size.
type KeyType string

// Supported key types.
const (
	RSA2048   KeyType = "rsa2048"
	RSA3072   KeyType = "rsa3072"
	RSA4096   KeyType = "rsa4096"
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
)

func (kt KeyType) rsaBits() int {
	switch kt {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	case RSA4096:
		return 4096
	}
	return 0
}

func (kt KeyType) curve() elliptic.Curve {
	switch kt {
	case ECDSAP256:
		return elliptic.P256()
	case ECDSAP384:
		return elliptic.P384()
	}
	return nil
}

// generateSoftware makes an in-memory key of type kt.
func generateSoftware(kt KeyType) (crypto.Signer, error) {
	if bits := kt.rsaBits(); bits > 0 {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	if c := kt.curve(); c != nil {
		return ecdsa.GenerateKey(c, rand.Reader)
	}
	return nil, fmt.Errorf("key type %q: %w", kt, ErrUnsupported)
}

// selfSigned makes the provisional certificate of a generated key.
func selfSigned(label string, key crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	} else {
		usage |= x509.KeyUsageKeyAgreement
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: label},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// checkChain makes sure chain is non-empty and its leaf is for pub.
func checkChain(pub crypto.PublicKey, chain []*x509.Certificate) error {
	if len(chain) == 0 || chain[0] == nil {
		return fmt.Errorf("empty chain: %w", ErrKeyMismatch)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := pub.(equaler)
	if !ok || !e.Equal(chain[0].PublicKey) {
		return fmt.Errorf("leaf %q: %w", chain[0].Subject, ErrKeyMismatch)
	}
	return nil
}

// validLabel accepts 1-64 characters of [A-Za-z0-9._-], not starting with
// '.' (labels name files in the File backend).
func validLabel(label string) error {
	if label == "" || len(label) > 64 || label[0] == '.' {
		return fmt.Errorf("label %q: %w", label, ErrInvalidLabel)
	}
	for _, r := range label {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("label %q: %w", label, ErrInvalidLabel)
		}
	}
	return nil
}
