package keystore

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/e2sgate/e2sgate/internal/durable"
)

// PKCS12Iterations is the PBKDF2 and MAC iteration count of written files.
const PKCS12Iterations = 100_000

// encoder writes PBES2/PBKDF2-HMAC-SHA-256/AES-256-CBC with an HMAC-SHA-256
// MAC (go-pkcs12's Modern2023): OpenSSL 3.0 reads it, whereas the PBMAC1 of
// Modern2026 needs OpenSSL 3.4.
var encoder = pkcs12.Modern2023.WithIterations(PKCS12Iterations)

const p12Ext = ".p12"

// File is the default keystore: one PKCS#12 file per credential, named
// <label>.p12, all encrypted under the keystore password.
type File struct {
	dir      string
	password string
}

var _ Keystore = (*File)(nil)

// OpenFile opens (creating if needed) a file keystore in dir. If the
// directory holds credentials already, the password is checked against
// one of them and a wrong one fails with ErrWrongPassword.
func OpenFile(dir, password string) (*File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open keystore %s: %w", dir, err)
	}
	f := &File{dir: dir, password: password}
	labels, err := f.List()
	if err != nil {
		return nil, fmt.Errorf("open keystore %s: %w", dir, err)
	}
	if len(labels) > 0 {
		if _, err := f.Credential(labels[0]); err != nil {
			return nil, fmt.Errorf("open keystore %s: %w", dir, err)
		}
	}
	return f, nil
}

// Generate makes a software key under label and stores it with a
// self-signed certificate.
func (f *File) Generate(label string, kt KeyType) (*Credential, error) {
	if err := f.free(label); err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	key, err := generateSoftware(kt)
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	cert, err := selfSigned(label, key)
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	chain := []*x509.Certificate{cert}
	if err := f.write(label, key, chain); err != nil {
		return nil, fmt.Errorf("generate %s: %w", label, err)
	}
	return &Credential{Label: label, Signer: key, Chain: chain}, nil
}

// Import stores key and chain under label.
func (f *File) Import(label string, key crypto.PrivateKey, chain []*x509.Certificate) error {
	if err := f.free(label); err != nil {
		return fmt.Errorf("import %s: %w", label, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("import %s: key %T: %w", label, key, ErrUnsupported)
	}
	if err := checkChain(signer.Public(), chain); err != nil {
		return fmt.Errorf("import %s: %w", label, err)
	}
	if err := f.write(label, key, chain); err != nil {
		return fmt.Errorf("import %s: %w", label, err)
	}
	return nil
}

// ImportPKCS12 reads a PKCS#12 file protected by filePassword (e.g. made by
// `openssl pkcs12 -export`) and stores its key and chain under label,
// re-encrypted under the keystore password.
func (f *File) ImportPKCS12(label string, data []byte, filePassword string) error {
	key, chain, err := decodeP12(data, filePassword)
	if err != nil {
		return fmt.Errorf("import %s: %w", label, err)
	}
	return f.Import(label, key, chain)
}

// SetChain replaces the chain of the credential under label.
func (f *File) SetChain(label string, chain []*x509.Certificate) error {
	c, err := f.Credential(label)
	if err != nil {
		return fmt.Errorf("set chain: %w", err)
	}
	if err := checkChain(c.Signer.Public(), chain); err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	if err := f.write(label, c.Signer, chain); err != nil {
		return fmt.Errorf("set chain of %s: %w", label, err)
	}
	return nil
}

// Credential reads and decrypts the credential under label.
func (f *File) Credential(label string) (*Credential, error) {
	if err := validLabel(label); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	data, err := os.ReadFile(f.path(label))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("credential %s: %w", label, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", label, err)
	}
	key, chain, err := decodeP12(data, f.password)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", label, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("credential %s: key %T: %w", label, key, ErrUnsupported)
	}
	return &Credential{Label: label, Signer: signer, Chain: chain}, nil
}

// List returns the labels of the stored credentials.
func (f *File) List() ([]string, error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", f.dir, err)
	}
	var labels []string
	for _, e := range entries {
		label, ok := strings.CutSuffix(e.Name(), p12Ext)
		if ok && e.Type().IsRegular() && validLabel(label) == nil {
			labels = append(labels, label)
		}
	}
	slices.Sort(labels)
	return labels, nil
}

// Delete removes the credential under label.
func (f *File) Delete(label string) error {
	if err := validLabel(label); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := os.Remove(f.path(label)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", label, ErrNotFound)
		}
		return fmt.Errorf("delete %s: %w", label, err)
	}
	return nil
}

// Close does nothing for the file keystore.
func (f *File) Close() error { return nil }

// Path returns the PKCS#12 file of the credential under label.
func (f *File) Path(label string) string { return f.path(label) }

func (f *File) path(label string) string { return filepath.Join(f.dir, label+p12Ext) }

func (f *File) free(label string) error {
	if err := validLabel(label); err != nil {
		return err
	}
	if _, err := os.Stat(f.path(label)); err == nil {
		return ErrExists
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (f *File) write(label string, key crypto.PrivateKey, chain []*x509.Certificate) error {
	data, err := encoder.Encode(key, chain[0], chain[1:], f.password)
	if err != nil {
		return fmt.Errorf("encode pkcs12: %w", err)
	}
	return durable.WriteFile(f.path(label), data, 0o600)
}

func decodeP12(data []byte, password string) (crypto.PrivateKey, []*x509.Certificate, error) {
	if err := checkIterations(data); err != nil {
		return nil, nil, err
	}
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		return nil, nil, ErrWrongPassword
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	chain := append([]*x509.Certificate{leaf}, cas...)
	if s, ok := key.(crypto.Signer); !ok || checkChain(s.Public(), chain) != nil {
		return nil, nil, fmt.Errorf("pkcs12 leaf certificate: %w", ErrKeyMismatch)
	}
	return key, chain, nil
}
