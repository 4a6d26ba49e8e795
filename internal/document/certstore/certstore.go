// Package certstore keeps partner certificates: one PEM file per partner id
// in a directory, written atomically, with revocation marks beside them; and
// exchanges certificates automatically by signed co-ordination messages
// (exchange.go).
//
// Layout of the directory:
//
//	<id>.pem      the partner's certificate (one CERTIFICATE block)
//	<id>.revoked  JSON revocation mark {"at": RFC 3339, "reason": "..."}
package certstore

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/cms"

	"github.com/e2sgate/e2sgate/internal/durable"
)

const (
	certExt    = ".pem"
	revokedExt = ".revoked"
)

// Entry is one stored partner certificate.
type Entry struct {
	ID          string
	Certificate *x509.Certificate
	// Revocation is nil unless the certificate is marked revoked.
	Revocation *Revocation
}

// Revocation is a revocation mark.
type Revocation struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// Store is a directory of partner certificates. Methods are safe for
// concurrent use within a process; writes are atomic (temporary file and
// rename), so readers in other processes never see partial files.
type Store struct {
	dir string
	mu  sync.Mutex // serialises read-modify-write sequences
}

// Open opens (creating if needed) the certstore in dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("open certstore %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Put stores cert as the certificate of partner id, replacing any earlier
// one (and its revocation mark). Putting back a certificate that is marked
// revoked under id fails with ErrRevoked.
func (s *Store) Put(id string, cert *x509.Certificate) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, err := s.get(id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("put %s: %w", id, err)
	case old.Revocation != nil && old.Certificate.Equal(cert):
		return fmt.Errorf("put %s: %w", id, ErrRevoked)
	case old.Certificate.Equal(cert):
		return nil
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := durable.WriteFile(s.path(id, certExt), data, 0o644); err != nil {
		return fmt.Errorf("put %s: %w", id, err)
	}
	if err := os.Remove(s.path(id, revokedExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("put %s: clear revocation: %w", id, err)
	}
	return nil
}

// Get returns the entry of partner id.
func (s *Store) Get(id string) (*Entry, error) {
	if err := validID(id); err != nil {
		return nil, fmt.Errorf("get: %w", err)
	}
	e, err := s.get(id)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", id, err)
	}
	return e, nil
}

// BySubjectKeyID returns the entry whose certificate has the subject key
// identifier skid.
func (s *Store) BySubjectKeyID(skid []byte) (*Entry, error) {
	e, err := s.find(func(c *x509.Certificate) bool {
		return len(c.SubjectKeyId) > 0 && bytes.Equal(c.SubjectKeyId, skid)
	})
	if err != nil {
		return nil, fmt.Errorf("find subject key id %x: %w", skid, err)
	}
	return e, nil
}

// ByIssuerSerial returns the entry whose certificate has the DER issuer
// name rawIssuer and the serial number serial (a CMS
// IssuerAndSerialNumber).
func (s *Store) ByIssuerSerial(rawIssuer []byte, serial *big.Int) (*Entry, error) {
	e, err := s.find(func(c *x509.Certificate) bool {
		return bytes.Equal(c.RawIssuer, rawIssuer) && c.SerialNumber.Cmp(serial) == 0
	})
	if err != nil {
		return nil, fmt.Errorf("find issuer and serial %x: %w", serial, err)
	}
	return e, nil
}

// List returns all entries ordered by id.
func (s *Store) List() ([]*Entry, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]*Entry, 0, len(ids))
	for _, id := range ids {
		e, err := s.get(id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list: %s: %w", id, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Certificates returns the certificates not marked revoked, e.g. for
// cms.VerifyOptions.Registered.
func (s *Store) Certificates() ([]*x509.Certificate, error) {
	entries, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for _, e := range entries {
		if e.Revocation == nil {
			out = append(out, e.Certificate)
		}
	}
	return out, nil
}

// Revoke marks the certificate of partner id revoked. It stays stored
// (for looking up old signatures) but IsRevoked reports it.
func (s *Store) Revoke(id, reason string, at time.Time) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(id); err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	data, err := json.Marshal(Revocation{At: at.UTC(), Reason: reason})
	if err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	if err := durable.WriteFile(s.path(id, revokedExt), data, 0o644); err != nil {
		return fmt.Errorf("revoke %s: %w", id, err)
	}
	return nil
}

// IsRevoked tells whether cert is stored under some partner id and marked
// revoked there.
func (s *Store) IsRevoked(cert *x509.Certificate) (bool, error) {
	entries, err := s.List()
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Revocation != nil && e.Certificate.Equal(cert) {
			return true, nil
		}
	}
	return false, nil
}

// CheckRevocation has the signature of cms.VerifyOptions.CheckRevocation:
// it refuses a certificate marked revoked here with an error that is both
// ErrRevoked and cms.ErrCertificateRevoked.
func (s *Store) CheckRevocation(cert *x509.Certificate, _ []*x509.Certificate) error {
	revoked, err := s.IsRevoked(cert)
	if err != nil {
		return fmt.Errorf("check revocation: %w", err)
	}
	if revoked {
		return fmt.Errorf("certificate %q: %w: %w", cert.Subject, ErrRevoked, cms.ErrCertificateRevoked)
	}
	return nil
}

// Delete removes partner id and its revocation mark.
func (s *Store) Delete(id string) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.path(id, certExt)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("delete %s: %w", id, ErrNotFound)
		}
		return fmt.Errorf("delete %s: %w", id, err)
	}
	if err := os.Remove(s.path(id, revokedExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

func (s *Store) get(id string) (*Entry, error) {
	data, err := os.ReadFile(s.path(id, certExt))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	blk, rest := pem.Decode(data)
	if blk == nil || blk.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%s: want one CERTIFICATE block: %w", id+certExt, ErrMalformed)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", id+certExt, ErrMalformed, err)
	}
	e := &Entry{ID: id, Certificate: cert}
	mark, err := os.ReadFile(s.path(id, revokedExt))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		e.Revocation = new(Revocation)
		if err := json.Unmarshal(mark, e.Revocation); err != nil {
			return nil, fmt.Errorf("%s: %w: %w", id+revokedExt, ErrMalformed, err)
		}
	}
	return e, nil
}

func (s *Store) find(match func(*x509.Certificate) bool) (*Entry, error) {
	entries, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if match(e.Certificate) {
			return e, nil
		}
	}
	return nil, ErrNotFound
}

func (s *Store) ids() ([]string, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, de := range des {
		id, ok := strings.CutSuffix(de.Name(), certExt)
		if ok && de.Type().IsRegular() && validID(id) == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

func (s *Store) path(id, ext string) string { return filepath.Join(s.dir, id+ext) }

// validID accepts 1-128 characters of [A-Za-z0-9._-], not starting with '.'.
func validID(id string) error {
	if id == "" || len(id) > 128 || id[0] == '.' {
		return fmt.Errorf("%q: %w", id, ErrInvalidID)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q: %w", id, ErrInvalidID)
		}
	}
	return nil
}
