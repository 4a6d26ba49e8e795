// Package client is the logic of e2s, the buyer / business client: document
// protection (compress, sign, encrypt) and opening with signed file
// acknowledgements, header signatures, sealed envelopes, and certificate
// exchange, over one configuration file that names the keystore, the
// certstore and the credential. cmd/e2s parses the command line and calls
// it; every operation reads its inputs whole and writes its outputs only
// after it has succeeded.
package client

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// Client carries the configuration and opens the keystore and certstore
// when an operation needs them.
type Client struct {
	cfg *Config
	log *slog.Logger

	ks    keystore.Keystore
	certs *certstore.Store
}

// New returns a client for cfg. Nothing is opened yet.
func New(cfg *Config, log *slog.Logger) *Client {
	return &Client{cfg: cfg, log: log}
}

// Config returns the configuration.
func (c *Client) Config() *Config { return c.cfg }

// Close releases the keystore (logs out of a token).
func (c *Client) Close() error {
	if c.ks == nil {
		return nil
	}
	return c.ks.Close()
}

// keystore opens the configured keystore once.
func (c *Client) keystore() (keystore.Keystore, error) {
	if c.ks != nil {
		return c.ks, nil
	}
	k := c.cfg.Keystore
	if p := k.PKCS11; p != nil {
		pin, err := secret("token PIN", p.PINEnv, p.PINFile)
		if err != nil {
			return nil, err
		}
		tok, err := keystore.OpenPKCS11(keystore.PKCS11Config{Module: p.Module, TokenLabel: p.Token, PIN: pin})
		if err != nil {
			return nil, fmt.Errorf("open keystore: %w", err)
		}
		c.ks = tok
		return c.ks, nil
	}
	pw, err := secret("keystore "+k.Dir, k.PasswordEnv, k.PasswordFile)
	if err != nil {
		return nil, err
	}
	f, err := keystore.OpenFile(k.Dir, pw)
	if err != nil {
		return nil, err
	}
	c.ks = f
	return c.ks, nil
}

// Credential is the configured credential (for commands built on the
// client, such as e2s buy); Close releases its keystore.
func (c *Client) Credential() (*keystore.Credential, error) { return c.credential() }

// credential loads the configured credential.
func (c *Client) credential() (*keystore.Credential, error) {
	ks, err := c.keystore()
	if err != nil {
		return nil, err
	}
	cred, err := ks.Credential(c.cfg.Credential)
	if err != nil {
		return nil, fmt.Errorf("credential %q: %w", c.cfg.Credential, err)
	}
	return cred, nil
}

// store opens the certstore once.
func (c *Client) store() (*certstore.Store, error) {
	if c.certs != nil {
		return c.certs, nil
	}
	s, err := certstore.Open(c.cfg.Certstore.Dir)
	if err != nil {
		return nil, fmt.Errorf("open certstore %s: %w", c.cfg.Certstore.Dir, err)
	}
	c.certs = s
	return s, nil
}

// roots reads certstore.roots, if configured.
func (c *Client) roots() (*x509.CertPool, error) {
	if c.cfg.Certstore.Roots == "" {
		return nil, nil
	}
	certs, err := readCertificates(c.cfg.Certstore.Roots)
	if err != nil {
		return nil, fmt.Errorf("certstore.roots: %w", err)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// decryptionKey is the credential's private key as cms.Decrypt wants it:
// a crypto.Decrypter for RSA, the ECDSA key itself for ECDH.
func decryptionKey(cred *keystore.Credential) (crypto.PrivateKey, error) {
	switch cred.Signer.Public().(type) {
	case *rsa.PublicKey:
		return cred.Decrypter()
	case *ecdsa.PublicKey:
		return cred.Signer, nil
	default:
		return nil, fmt.Errorf("credential %s: %T: %w", cred.Label, cred.Signer.Public(), keystore.ErrNotDecrypter)
	}
}

// readCertificates reads every certificate of a PEM file (or one DER
// certificate).
func readCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", path, ErrBadInput, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		cert, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("%s: no CERTIFICATE in PEM or DER: %w", path, ErrBadInput)
		}
		certs = append(certs, cert)
	}
	return certs, nil
}

// partner returns the certificate of partner id, refusing revoked and
// expired ones.
func (c *Client) partner(id string) (*certstore.Entry, error) {
	s, err := c.store()
	if err != nil {
		return nil, err
	}
	e, err := s.Get(id)
	if err != nil {
		return nil, fmt.Errorf("partner %s: %w", id, err)
	}
	if e.Revocation != nil {
		return nil, fmt.Errorf("partner %s: revoked %s (%s): %w", id, e.Revocation.At.Format("2006-01-02"), e.Revocation.Reason, certstore.ErrRevoked)
	}
	return e, nil
}

// whoIs names the certstore entry holding cert, or its subject.
func (c *Client) whoIs(cert *x509.Certificate) string {
	s, err := c.store()
	if err == nil {
		if entries, err := s.List(); err == nil {
			for _, e := range entries {
				if e.Certificate.Equal(cert) {
					return e.ID
				}
			}
		}
	}
	return cert.Subject.String()
}
