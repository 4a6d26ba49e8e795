package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// testIdentity is a key with its certificate chain (leaf first, root last)
// and the same material as PEM files for openssl.
type testIdentity struct {
	name     string
	key      crypto.Signer
	chain    []*x509.Certificate
	keyFile  string
	certFile string
}

func (id *testIdentity) cert() *x509.Certificate { return id.chain[0] }

type testPKI struct {
	dir     string
	root    *testIdentity
	inter   *testIdentity
	caFile  string // root PEM
	roots   *x509.CertPool
	ids     map[string]*testIdentity
	expired *testIdentity
	revoked *testIdentity
	noSign  *testIdentity // key usage keyEncipherment only
	crl     *x509.RevocationList
	crlFile string
	other   *testIdentity // chains to an unrelated root
	otherCA *testIdentity
}

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pki != nil {
		os.RemoveAll(pki.dir)
	}
	os.Exit(code)
}

// getPKI builds, once per test binary, a root CA, an intermediate and leaf
// identities for every supported key type.
func getPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pki, pkiErr = buildPKI() })
	if pkiErr != nil {
		t.Fatalf("test PKI: %v", pkiErr)
	}
	return pki
}

var serial int64 = 1000

// newKey loads the fixed test key testdata/keys/<name>.key (PKCS#8 PEM).
// Fixed keys keep the fuzz workers, whose instrumented crypto makes RSA
// key generation very slow, quick to start; certificates are still issued
// per run. kind is checked against the key's type.
func newKey(name, kind string) (crypto.Signer, error) {
	data, err := os.ReadFile(filepath.Join("testdata", "keys", name+".key"))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", name)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if kind == "rsa" {
			return k, nil
		}
	case *ecdsa.PrivateKey:
		if (kind == "p256" && k.Curve == elliptic.P256()) || (kind == "p384" && k.Curve == elliptic.P384()) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%s: key is %T, want %s", name, key, kind)
}

func issue(dir, name, kind string, parent *testIdentity, isCA bool, ku x509.KeyUsage, notBefore, notAfter time.Time) (*testIdentity, error) {
	key, err := newKey(name, kind)
	if err != nil {
		return nil, err
	}
	serial++
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	ski := sha1.Sum(spki)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"e2sgate test"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              ku,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		SubjectKeyId:          ski[:],
	}
	if !isCA {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageClientAuth}
		tmpl.EmailAddresses = []string{name + "@example.test"}
	}
	parentCert, parentKey := tmpl, key
	var chain []*x509.Certificate
	if parent != nil {
		parentCert, parentKey = parent.cert(), parent.key
		chain = parent.chain
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parentCert, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	id := &testIdentity{name: name, key: key, chain: append([]*x509.Certificate{cert}, chain...)}
	id.certFile = filepath.Join(dir, name+".pem")
	id.keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(id.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(id.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		return nil, err
	}
	return id, nil
}

func buildPKI() (*testPKI, error) {
	dir, err := os.MkdirTemp("", "cms-pki-")
	if err != nil {
		return nil, err
	}
	p := &testPKI{dir: dir, ids: map[string]*testIdentity{}}
	now := time.Now()
	from, to := now.Add(-time.Hour), now.Add(24*time.Hour)
	caKU := x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	if p.root, err = issue(dir, "root", "p256", nil, true, caKU, from, to); err != nil {
		return nil, err
	}
	if p.inter, err = issue(dir, "inter", "p256", p.root, true, caKU, from, to); err != nil {
		return nil, err
	}
	p.caFile = p.root.certFile
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.root.cert())
	leafKU := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment
	for _, kind := range []string{"rsa", "p256", "p384"} {
		ku := leafKU | x509.KeyUsageKeyEncipherment
		if kind != "rsa" {
			ku = leafKU | x509.KeyUsageKeyAgreement
		}
		id, err := issue(dir, kind, kind, p.inter, false, ku, from, to)
		if err != nil {
			return nil, err
		}
		p.ids[kind] = id
	}
	if p.expired, err = issue(dir, "expired", "p256", p.inter, false, leafKU, now.Add(-48*time.Hour), now.Add(-24*time.Hour)); err != nil {
		return nil, err
	}
	if p.revoked, err = issue(dir, "revoked", "p256", p.inter, false, leafKU, from, to); err != nil {
		return nil, err
	}
	if p.noSign, err = issue(dir, "nosign", "rsa", p.inter, false, x509.KeyUsageKeyEncipherment, from, to); err != nil {
		return nil, err
	}
	if p.otherCA, err = issue(dir, "otherca", "p256", nil, true, caKU, from, to); err != nil {
		return nil, err
	}
	if p.other, err = issue(dir, "other", "p256", p.otherCA, false, leafKU, from, to); err != nil {
		return nil, err
	}
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: from,
		NextUpdate: to,
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: p.revoked.cert().SerialNumber, RevocationTime: from},
		},
	}, p.inter.cert(), p.inter.key)
	if err != nil {
		return nil, err
	}
	if p.crl, err = x509.ParseRevocationList(crlDER); err != nil {
		return nil, err
	}
	p.crlFile = filepath.Join(dir, "inter.crl")
	if err := os.WriteFile(p.crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}), 0o600); err != nil {
		return nil, err
	}
	// A chain file (leaf + intermediate) per identity, for -certfile.
	return p, nil
}

// writeFile writes data to a new file in t's temp dir and returns its path.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// certsPEM writes certificates to one PEM file.
func certsPEM(t testing.TB, certs ...*x509.Certificate) string {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range certs {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return writeFile(t, "certs.pem", buf.Bytes())
}

// openssl runs /usr/bin/openssl and returns its stdout; stderr goes into the error.
func openssl(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	path := testutil.Requires(t, "openssl")
	cmd := exec.Command(path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &opensslError{err: err, stderr: stderr.String(), args: args}
	}
	return stdout.Bytes(), nil
}

type opensslError struct {
	err    error
	stderr string
	args   []string
}

func (e *opensslError) Error() string {
	return "openssl " + joinArgs(e.args) + ": " + e.err.Error() + "\n" + e.stderr
}

func joinArgs(a []string) string {
	var b bytes.Buffer
	for i, s := range a {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s)
	}
	return b.String()
}
