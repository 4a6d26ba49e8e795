package keystore_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e2sgate/e2sgate/internal/document/keystore"
	"github.com/e2sgate/e2sgate/internal/testutil"
)

const password = "s3cret-Keystore-pw"

func requireOpenSSL(t *testing.T) string {
	t.Helper()
	p := testutil.Requires(t, "openssl")
	return p
}

// TestOpenSSLReadsOurPKCS12 writes credentials and has openssl 3 decode
// them: with the right password it yields our key and chain, with a wrong
// one it fails; -info shows PBES2 with AES-256-CBC and a SHA-256 MAC.
func TestOpenSSLReadsOurPKCS12(t *testing.T) {
	openssl := requireOpenSSL(t)
	ks, err := keystore.OpenFile(t.TempDir(), password)
	if err != nil {
		t.Fatal(err)
	}
	for _, kt := range []keystore.KeyType{keystore.RSA2048, keystore.ECDSAP384} {
		t.Run(string(kt), func(t *testing.T) {
			label := "cred-" + string(kt)
			cred, err := ks.Generate(label, kt)
			if err != nil {
				t.Fatal(err)
			}
			ca, caKey := newCA(t)
			chain := []*x509.Certificate{issue(t, ca, caKey, label, cred.Signer.Public()), ca}
			if err := ks.SetChain(label, chain); err != nil {
				t.Fatal(err)
			}
			p12 := ks.Path(label)

			out, err := exec.Command(openssl, "pkcs12", "-in", p12, "-passin", "pass:"+password, "-nodes").Output()
			if err != nil {
				t.Fatalf("openssl pkcs12 -nodes: %v", err)
			}
			var keys, certs [][]byte
			for rest := out; ; {
				var blk *pem.Block
				blk, rest = pem.Decode(rest)
				if blk == nil {
					break
				}
				switch blk.Type {
				case "PRIVATE KEY":
					keys = append(keys, blk.Bytes)
				case "CERTIFICATE":
					certs = append(certs, blk.Bytes)
				}
			}
			if len(keys) != 1 || len(certs) != 2 {
				t.Fatalf("openssl printed %d keys and %d certificates, want 1 and 2", len(keys), len(certs))
			}
			k, err := x509.ParsePKCS8PrivateKey(keys[0])
			if err != nil {
				t.Fatal(err)
			}
			if !k.(interface{ Equal(crypto.PrivateKey) bool }).Equal(cred.Signer) {
				t.Fatal("openssl's private key differs from the credential's")
			}
			for i, c := range chain {
				if !slicesContains(certs, c.Raw) {
					t.Fatalf("openssl output lacks chain certificate %d", i)
				}
			}

			info, err := exec.Command(openssl, "pkcs12", "-in", p12, "-passin", "pass:"+password, "-info", "-noout").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl pkcs12 -info: %v\n%s", err, info)
			}
			for _, want := range []string{"MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "Shrouded Keybag: PBES2"} {
				if !strings.Contains(string(info), want) {
					t.Errorf("openssl -info lacks %q:\n%s", want, info)
				}
			}
			if strings.Contains(string(info), "RC2") || strings.Contains(string(info), "3DES") {
				t.Errorf("legacy cipher in file:\n%s", info)
			}

			if err := exec.Command(openssl, "pkcs12", "-in", p12, "-passin", "pass:wrong", "-nodes").Run(); err == nil {
				t.Fatal("openssl decoded the file with a wrong password")
			}
		})
	}
}

// TestImportOpenSSLPKCS12 reads .p12 files made by `openssl pkcs12 -export`
// (RSA and ECDSA, with a CA certificate in the chain).
func TestImportOpenSSLPKCS12(t *testing.T) {
	openssl := requireOpenSSL(t)
	tests := []struct {
		name    string
		keyArgs []string
	}{
		{"rsa", []string{"-newkey", "rsa:2048"}},
		{"ecdsa", []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			run := func(args ...string) {
				t.Helper()
				cmd := exec.Command(openssl, args...)
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=OpenSSL CA", "-days", "2")
			run(append(append([]string{"req"}, tt.keyArgs...), "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=partner.example")...)
			run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "leaf.pem", "-days", "2")
			run("pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", "ca.pem", "-passout", "pass:file-pw", "-out", "in.p12")
			data, err := os.ReadFile(filepath.Join(dir, "in.p12"))
			if err != nil {
				t.Fatal(err)
			}

			ks, err := keystore.OpenFile(filepath.Join(dir, "ks"), password)
			if err != nil {
				t.Fatal(err)
			}
			if err := ks.ImportPKCS12("partner", data, "not-the-pw"); !errors.Is(err, keystore.ErrWrongPassword) {
				t.Fatalf("import with wrong password: err = %v, want ErrWrongPassword", err)
			}
			if err := ks.ImportPKCS12("partner", data, "file-pw"); err != nil {
				t.Fatal(err)
			}
			cred, err := ks.Credential("partner")
			if err != nil {
				t.Fatal(err)
			}
			if len(cred.Chain) != 2 || cred.Chain[0].Subject.CommonName != "partner.example" || cred.Chain[1].Subject.CommonName != "OpenSSL CA" {
				t.Fatalf("imported chain: %d certs, leaf %q", len(cred.Chain), cred.Chain[0].Subject)
			}
			keyPEM, err := os.ReadFile(filepath.Join(dir, "leaf.key"))
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(keyPEM)
			orig, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !orig.(interface{ Equal(crypto.PrivateKey) bool }).Equal(cred.Signer) {
				t.Fatal("imported key differs from openssl's key")
			}
			// The stored copy is re-encrypted under the keystore password.
			if err := exec.Command(openssl, "pkcs12", "-in", ks.Path("partner"), "-passin", "pass:"+password, "-nodes").Run(); err != nil {
				t.Fatalf("openssl cannot read the re-encrypted copy: %v", err)
			}
		})
	}
}

func TestFileWrongPassword(t *testing.T) {
	dir := t.TempDir()
	ks, err := keystore.OpenFile(dir, password)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Generate("merchant", keystore.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pw   string
		want error
	}{
		{"right", password, nil},
		{"wrong", "S3cret-Keystore-pw", keystore.ErrWrongPassword},
		{"empty", "", keystore.ErrWrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keystore.OpenFile(dir, tt.pw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenFile err = %v, want %v", err, tt.want)
			}
		})
	}
	// The file holds no plaintext key material.
	cred, err := ks.Credential("merchant")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(ks.Path("merchant"))
	if err != nil {
		t.Fatal(err)
	}
	d := cred.Signer.(*ecdsa.PrivateKey).D.Bytes()
	if bytes.Contains(raw, d) {
		t.Fatal("private scalar stored in the clear")
	}
	if fi, err := os.Stat(ks.Path("merchant")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

func TestFileImport(t *testing.T) {
	ks, err := keystore.OpenFile(t.TempDir(), password)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey := newCA(t)
	leaf := issue(t, ca, caKey, "imported", &key.PublicKey)
	tests := []struct {
		name  string
		label string
		key   crypto.PrivateKey
		chain []*x509.Certificate
		want  error
	}{
		{"mismatched key", "a", otherKey, []*x509.Certificate{leaf, ca}, keystore.ErrKeyMismatch},
		{"no chain", "a", key, nil, keystore.ErrKeyMismatch},
		{"ok", "a", key, []*x509.Certificate{leaf, ca}, nil},
		{"again", "a", key, []*x509.Certificate{leaf, ca}, keystore.ErrExists},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ks.Import(tt.label, tt.key, tt.chain); !errors.Is(err, tt.want) {
				t.Fatalf("Import err = %v, want %v", err, tt.want)
			}
		})
	}
	cred, err := ks.Credential("a")
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(cred.Signer) || !cred.Chain[0].Equal(leaf) {
		t.Fatal("imported credential differs")
	}
}

func slicesContains(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}
