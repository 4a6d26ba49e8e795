package certstore_test

import (
	"crypto/x509"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/testutil"
)

func TestStoreLookups(t *testing.T) {
	root := newCA(t, "Trust Centre")
	acme := issue(t, root, "acme", t0).chain[0]
	globex := issue(t, root, "globex", t0).chain[0]
	s, err := certstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for id, c := range map[string]*x509.Certificate{"acme": acme, "globex": globex} {
		if err := s.Put(id, c); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		lookup func() (*certstore.Entry, error)
		wantID string
		want   error
	}{
		{"by id", func() (*certstore.Entry, error) { return s.Get("globex") }, "globex", nil},
		{"by subject key id", func() (*certstore.Entry, error) { return s.BySubjectKeyID(acme.SubjectKeyId) }, "acme", nil},
		{"by issuer and serial", func() (*certstore.Entry, error) { return s.ByIssuerSerial(globex.RawIssuer, globex.SerialNumber) }, "globex", nil},
		{"unknown id", func() (*certstore.Entry, error) { return s.Get("initech") }, "", certstore.ErrNotFound},
		{"unknown subject key id", func() (*certstore.Entry, error) { return s.BySubjectKeyID([]byte{1, 2, 3}) }, "", certstore.ErrNotFound},
		{"right issuer, wrong serial", func() (*certstore.Entry, error) {
			return s.ByIssuerSerial(acme.RawIssuer, new(big.Int).Add(acme.SerialNumber, big.NewInt(1000)))
		}, "", certstore.ErrNotFound},
		{"path traversal id", func() (*certstore.Entry, error) { return s.Get("../acme") }, "", certstore.ErrInvalidID},
		{"hidden id", func() (*certstore.Entry, error) { return s.Get(".acme") }, "", certstore.ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.lookup()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want == nil && e.ID != tt.wantID {
				t.Fatalf("found %q, want %q", e.ID, tt.wantID)
			}
		})
	}
	entries, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].ID != "acme" || !entries[0].Certificate.Equal(acme) || entries[1].ID != "globex" {
		t.Fatalf("List = %v", entries)
	}
}

func TestRevocation(t *testing.T) {
	p := issue(t, nil, "acme", t0).chain[0]
	q := issue(t, nil, "acme", t0).chain[0]
	s, err := certstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("acme", p); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckRevocation(p, nil); err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	if err := s.Revoke("acme", "key compromise", t0); err != nil {
		t.Fatal(err)
	}
	e, err := s.Get("acme")
	if err != nil {
		t.Fatal(err)
	}
	if e.Revocation == nil || e.Revocation.Reason != "key compromise" || !e.Revocation.At.Equal(t0) {
		t.Fatalf("revocation mark = %+v", e.Revocation)
	}
	err = s.CheckRevocation(p, nil)
	if !errors.Is(err, certstore.ErrRevoked) || !errors.Is(err, cms.ErrCertificateRevoked) {
		t.Fatalf("CheckRevocation = %v, want ErrRevoked and cms.ErrCertificateRevoked", err)
	}
	if certs, _ := s.Certificates(); len(certs) != 0 {
		t.Fatalf("Certificates returns %d revoked certificates", len(certs))
	}
	if err := s.Put("acme", p); !errors.Is(err, certstore.ErrRevoked) {
		t.Fatalf("re-adding the revoked certificate: err = %v, want ErrRevoked", err)
	}
	// A new certificate replaces the revoked one and clears the mark.
	if err := s.Put("acme", q); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.Get("acme"); e.Revocation != nil || !e.Certificate.Equal(q) {
		t.Fatalf("after replacement: %+v", e)
	}
	if err := s.Revoke("nobody", "x", t0); !errors.Is(err, certstore.ErrNotFound) {
		t.Fatalf("revoke unknown: err = %v", err)
	}
	if err := s.Delete("acme"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("acme"); !errors.Is(err, certstore.ErrNotFound) {
		t.Fatalf("second delete: err = %v", err)
	}
}

// TestStoreFilesAreOpenSSLReadable checks the layout: one PEM file per
// partner, readable by openssl, no temporary files left over.
func TestStoreFilesAreOpenSSLReadable(t *testing.T) {
	openssl := testutil.Requires(t, "openssl")
	dir := t.TempDir()
	s, err := certstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put("acme", issue(t, nil, "acme", t0).chain[0]); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-in", filepath.Join(dir, "acme.pem"), "-noout", "-subject").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "CN = acme") {
		t.Fatalf("openssl subject = %q", out)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != "acme.pem" {
		t.Fatalf("directory holds %v", names)
	}
}

// TestAtomicWrites has writers replace a partner's certificate while
// readers read it; a reader must always see one whole certificate.
func TestAtomicWrites(t *testing.T) {
	s, err := certstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	certs := []*x509.Certificate{issue(t, nil, "acme", t0).chain[0], issue(t, nil, "acme", t0).chain[0]}
	if err := s.Put("acme", certs[0]); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for w := range 2 {
		wg.Go(func() {
			for i := range 100 {
				if err := s.Put("acme", certs[(w+i)%2]); err != nil {
					errs <- err
				}
			}
		})
		wg.Go(func() {
			for range 100 {
				e, err := s.Get("acme")
				if err != nil {
					errs <- err
					continue
				}
				if !e.Certificate.Equal(certs[0]) && !e.Certificate.Equal(certs[1]) {
					errs <- errors.New("read a certificate never written")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
