package client

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// KeyTypes maps the -type names to keystore key types.
var KeyTypes = map[string]keystore.KeyType{
	"rsa-2048":   keystore.RSA2048,
	"rsa-3072":   keystore.RSA3072,
	"rsa-4096":   keystore.RSA4096,
	"ecdsa-p256": keystore.ECDSAP256,
	"ecdsa-p384": keystore.ECDSAP384,
}

// KeyInfo describes a credential.
type KeyInfo struct {
	Label       string
	Subject     string
	KeyType     string
	NotAfter    time.Time
	Fingerprint string
	Configured  bool
}

func keyInfo(c *Client, cred *keystore.Credential) KeyInfo {
	cert := cred.Certificate()
	return KeyInfo{Label: cred.Label, Subject: cert.Subject.String(), KeyType: cert.PublicKeyAlgorithm.String(),
		NotAfter: cert.NotAfter, Fingerprint: fingerprint(cert), Configured: cred.Label == c.cfg.Credential}
}

// Keygen makes a new key under label (the configured credential if empty)
// with a self-signed certificate naming it.
func (c *Client) Keygen(label, typ string) (*KeyInfo, error) {
	kt, ok := KeyTypes[typ]
	if !ok {
		return nil, fmt.Errorf("key type %q: one of rsa-2048, rsa-3072, rsa-4096, ecdsa-p256, ecdsa-p384: %w", typ, ErrUsage)
	}
	if label == "" {
		label = c.cfg.Credential
	}
	ks, err := c.keystore()
	if err != nil {
		return nil, err
	}
	cred, err := ks.Generate(label, kt)
	if err != nil {
		return nil, fmt.Errorf("keygen %s: %w", label, err)
	}
	c.log.Info("key generated", "label", label, "type", typ)
	ki := keyInfo(c, cred)
	return &ki, nil
}

// ExportCert returns the configured credential's certificate chain as PEM.
func (c *Client) ExportCert() ([]byte, error) {
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, cert := range cred.Chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
	}
	return out, nil
}

// Certificate returns the configured credential's certificate.
func (c *Client) Certificate() (*x509.Certificate, error) {
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	return cred.Certificate(), nil
}

// ListKeys describes every credential in the keystore.
func (c *Client) ListKeys() ([]KeyInfo, error) {
	ks, err := c.keystore()
	if err != nil {
		return nil, err
	}
	labels, err := ks.List()
	if err != nil {
		return nil, fmt.Errorf("keystore list: %w", err)
	}
	var out []KeyInfo
	for _, l := range labels {
		cred, err := ks.Credential(l)
		if err != nil {
			return nil, fmt.Errorf("keystore list: %s: %w", l, err)
		}
		out = append(out, keyInfo(c, cred))
	}
	return out, nil
}

// ImportPKCS12 stores the key and chain of a PKCS#12 file (e.g. from a CA,
// or "openssl pkcs12 -export") under label, re-encrypted under the keystore
// password. The file's password is in the environment variable
// passwordEnv, or is the keystore password if passwordEnv is empty. Only
// the file keystore can import: token keys are made on the token.
func (c *Client) ImportPKCS12(label, path, passwordEnv string) (*KeyInfo, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, err
	}
	ks, err := c.keystore()
	if err != nil {
		return nil, err
	}
	k := c.cfg.Keystore
	if passwordEnv != "" {
		k.PasswordEnv, k.PasswordFile = passwordEnv, ""
	}
	password, err := secret("PKCS#12 file "+path, k.PasswordEnv, k.PasswordFile)
	if err != nil {
		return nil, err
	}
	f, ok := ks.(*keystore.File)
	if !ok {
		return nil, fmt.Errorf("keystore import: a PKCS#11 token generates its keys: %w", keystore.ErrUnsupported)
	}
	if err := f.ImportPKCS12(label, data, password); err != nil {
		if errors.Is(err, keystore.ErrWrongPassword) {
			// The file's password, not the keystore's.
			return nil, fmt.Errorf("keystore import %s: %w", path, ErrImportPassword)
		}
		return nil, fmt.Errorf("keystore import %s: %w", path, err)
	}
	cred, err := f.Credential(label)
	if err != nil {
		return nil, err
	}
	c.log.Info("credential imported", "label", label, "from", path)
	ki := keyInfo(c, cred)
	return &ki, nil
}
