package main

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/internal/testutil"
)

// The tests run the real program: the test binary re-executes itself as
// e2s (E2S_TEST_MAIN=1 makes TestMain call main), the way net/http/cgi's
// tests start their child. Each party has its own directory with an
// e2s.yaml, a keystore and a certstore, and its own password variable.

const asMain = "E2S_TEST_MAIN"

// world holds parties made once by TestMain: alice (RSA) and bob (ECDSA
// P-256) have exchanged certificates; carol (RSA) knows bob's certificate
// but bob does not know hers. Tests that change a party work on a clone.
var world struct {
	dir               string
	alice, bob, carol *party
}

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	os.Exit(setupAndRun(m))
}

func setupAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "e2s-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	world.dir = dir
	if err := setupSoftHSM(dir); err != nil {
		fmt.Fprintln(os.Stderr, "set up SoftHSM:", err)
		return 1
	}
	if err := makeWorld(dir); err != nil {
		fmt.Fprintln(os.Stderr, "set up parties:", err)
		return 1
	}
	return m.Run()
}

func makeWorld(dir string) error {
	var err error
	mk := func(name, typ string) *party {
		if err != nil {
			return nil
		}
		var p *party
		p, err = newParty(filepath.Join(dir, name), name, typ, "")
		return p
	}
	world.alice = mk("alice", "rsa-3072")
	world.bob = mk("bob", "ecdsa-p256")
	world.carol = mk("carol", "rsa-2048")
	if err != nil {
		return err
	}
	if err := exchange(world.alice, world.bob); err != nil {
		return err
	}
	bobPEM := filepath.Join(dir, "bob.pem")
	if _, _, err := world.bob.run("cert", "export", "-out", bobPEM); err != nil {
		return err
	}
	_, _, err = world.carol.run("certstore", "add", "bob", bobPEM)
	return err
}

// party is one e2s installation.
type party struct {
	name, dir string
	password  string
}

// newParty writes a configuration (relative paths, so a copied directory
// is a working clone) and generates the credential.
// extra is appended to the configuration; a keystore section in it
// replaces the default one (PKCS#12 files in keys/).
func newParty(dir, name, keyType, extra string) (*party, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &party{name: name, dir: dir, password: "pw-" + name}
	ks := fmt.Sprintf("keystore:\n  dir: keys\n  password_env: %s\n", p.passwordVar())
	if strings.Contains(extra, "keystore:") {
		ks = ""
	}
	cfg := fmt.Sprintf(`version: 1
credential: %s
%scertstore:
  dir: partners
  trust_on_first_use: true
%s`, name, ks, extra)
	if err := os.WriteFile(p.config(), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if _, stderr, err := p.run("keygen", "-type", keyType); err != nil {
		return nil, fmt.Errorf("keygen %s: %v: %s", name, err, stderr)
	}
	return p, nil
}

func (p *party) config() string      { return filepath.Join(p.dir, "e2s.yaml") }
func (p *party) passwordVar() string { return "E2S_TEST_PW_" + strings.ToUpper(p.name) }

// clone copies the party's directory, so a test can change its state.
func (p *party) clone(t *testing.T) *party {
	t.Helper()
	dst := filepath.Join(t.TempDir(), p.name)
	if err := os.CopyFS(dst, os.DirFS(p.dir)); err != nil {
		t.Fatal(err)
	}
	c := *p
	c.dir = dst
	return &c
}

// run executes e2s as this party; extraEnv may override the password.
func (p *party) runEnv(extraEnv []string, args ...string) (stdout, stderr string, err error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	cmd := exec.Command(self, append([]string{"-config", p.config()}, args...)...)
	cmd.Env = append(os.Environ(), asMain+"=1", p.passwordVar()+"="+p.password)
	cmd.Env = append(cmd.Env, extraEnv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (p *party) run(args ...string) (string, string, error) { return p.runEnv(nil, args...) }

// ok runs a command that must succeed and returns its standard output.
func (p *party) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := p.run(args...)
	if err != nil {
		t.Fatalf("%s: e2s %s: %v\n%s", p.name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// fails runs a command that must exit 1 and returns its standard error.
func (p *party) fails(t *testing.T, extraEnv []string, args ...string) string {
	t.Helper()
	_, stderr, err := p.runEnv(extraEnv, args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("%s: e2s %s: exit %v, want 1\n%s", p.name, strings.Join(args, " "), err, stderr)
	}
	return stderr
}

// exchange runs the certificate exchange by files: a requests, b
// responds, a completes.
func exchange(a, b *party) error {
	req := filepath.Join(a.dir, "exchange-"+b.name+".req")
	resp := filepath.Join(b.dir, "exchange-"+a.name+".resp")
	if _, stderr, err := a.run("exchange", "request", "-to", b.name, req); err != nil {
		return fmt.Errorf("request: %v: %s", err, stderr)
	}
	if _, stderr, err := b.run("exchange", "respond", req, resp); err != nil {
		return fmt.Errorf("respond: %v: %s", err, stderr)
	}
	if _, stderr, err := a.run("exchange", "complete", "-request", req, resp); err != nil {
		return fmt.Errorf("complete: %v: %s", err, stderr)
	}
	return nil
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s exists after a failed command (err %v)", path, err)
	}
}

func mustContain(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Fatalf("output lacks %q:\n%s", w, s)
		}
	}
}

// document is a compressible test document of about n bytes.
func document(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "invoice line %d: 1 x licence, EUR %d.00\n", i, i%97)
	}
	return b.Bytes()
}

// TestTwoParties: two parties with their own configuration, keystore and
// certstore exchange certificates by files; A protects a document for B, B
// opens it and writes the signed acknowledgement, A verifies it against
// the file it sent.
func TestTwoParties(t *testing.T) {
	tests := []struct {
		name         string
		aType, bType string
		protectFlags []string
		wantAck      string
	}{
		{"rsa to ecdsa, gcm, receipt requested", "rsa-2048", "ecdsa-p256", []string{"-ack"}, "signed receipt (RFC 2634)"},
		{"ecdsa to rsa, cbc, no receipt request", "ecdsa-p256", "rsa-2048", []string{"-cipher", "aes-256-cbc"}, "signed file acknowledgement"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := newParty(filepath.Join(dir, "a"), "acme-buyer", tt.aType, "")
			if err != nil {
				t.Fatal(err)
			}
			b, err := newParty(filepath.Join(dir, "b"), "widget-supplier", tt.bType, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := exchange(a, b); err != nil {
				t.Fatal(err)
			}
			mustContain(t, a.ok(t, "certstore", "list"), "widget-supplier", "CN=widget-supplier", "valid")
			mustContain(t, b.ok(t, "certstore", "list"), "acme-buyer", "CN=acme-buyer", "valid")

			doc := document(200 << 10)
			in := writeFile(t, "invoice.xml", doc)
			protected := filepath.Join(dir, "invoice.p7m")
			a.ok(t, append(append([]string{"protect", "-to", "widget-supplier"}, tt.protectFlags...), in, protected)...)
			if p := readFile(t, protected); len(p) >= len(doc)/2 || bytes.Contains(p, []byte("invoice line")) {
				t.Fatalf("protected file of %d bytes is not compressed and encrypted", len(p))
			}

			out, ack := filepath.Join(dir, "received.xml"), filepath.Join(dir, "invoice.ack")
			mustContain(t, b.ok(t, "open", protected, out, "-ack-out", ack, "-from", "acme-buyer"), "from acme-buyer")
			if !bytes.Equal(readFile(t, out), doc) {
				t.Fatal("opened document differs from the original")
			}
			mustContain(t, a.ok(t, "verify-ack", ack, "-original", protected), tt.wantAck, "by widget-supplier",
				`"received.xml"`, fmt.Sprintf("%d bytes", len(doc)))

			// The acknowledgement proves receipt of exactly that document.
			other := filepath.Join(dir, "other.p7m")
			a.ok(t, "protect", "-to", "widget-supplier", writeFile(t, "other.xml", document(1000)), other)
			mustContain(t, a.fails(t, nil, "verify-ack", ack, "-original", other), "not for this document")
		})
	}
}

// TestRefusals: damaged, misdirected or untrusted input is refused with an
// error that names the cause and the next step, exit status 1, and no
// output file.
func TestRefusals(t *testing.T) {
	alice, bob, carol := world.alice, world.bob, world.carol
	dir := t.TempDir()
	doc := document(50 << 10)
	in := writeFile(t, "doc.txt", doc)
	protected := filepath.Join(dir, "doc.p7m")
	alice.ok(t, "protect", "-to", "bob", in, protected)
	good := readFile(t, protected)
	ack := filepath.Join(dir, "doc.ack")
	bob.ok(t, "open", protected, filepath.Join(dir, "ok.txt"), "-ack-out", ack)
	fromCarol := filepath.Join(dir, "carol.p7m")
	carol.ok(t, "protect", "-to", "bob", in, fromCarol)

	flip := func(at func(n int) int) string {
		b := bytes.Clone(good)
		b[at(len(b))] ^= 0x01
		return writeFile(t, "tampered.p7m", b)
	}
	tests := []struct {
		name  string
		who   *party
		env   []string
		args  func(out string) []string
		wants []string
	}{
		{"ciphertext byte flipped", bob, nil, func(out string) []string {
			return []string{"open", flip(func(n int) int { return n / 2 }), out}
		}, []string{"altered or damaged"}},
		// The message ends with the tag and three end-of-contents pairs.
		{"last byte of the tag flipped", bob, nil, func(out string) []string {
			return []string{"open", flip(func(n int) int { return n - 7 }), out}
		}, []string{"altered or damaged"}},
		{"end-of-contents byte flipped", bob, nil, func(out string) []string {
			return []string{"open", flip(func(n int) int { return n - 1 }), out}
		}, []string{"truncated or not of the expected kind"}},
		{"header byte flipped", bob, nil, func(out string) []string {
			return []string{"open", flip(func(n int) int { return 40 }), out}
		}, []string{"e2s: next:"}},
		{"truncated", bob, nil, func(out string) []string {
			return []string{"open", writeFile(t, "short.p7m", good[:len(good)/3]), out}
		}, []string{"truncated"}},
		{"not encrypted for me", carol, nil, func(out string) []string {
			return []string{"open", protected, out}
		}, []string{"not encrypted for your credential"}},
		{"unknown signer", bob, nil, func(out string) []string {
			return []string{"open", fromCarol, out}
		}, []string{"not in your certstore"}},
		{"wrong sender expected", bob, nil, func(out string) []string {
			return []string{"open", "-from", "carol", protected, out}
		}, []string{"partner carol", "not found"}},
		{"wrong password", bob, []string{"E2S_TEST_PW_BOB=guess"}, func(out string) []string {
			return []string{"open", protected, out}
		}, []string{"wrong password", "password (or token PIN) is wrong"}},
		{"password not set", bob, []string{"E2S_TEST_PW_BOB="}, func(out string) []string {
			return []string{"open", protected, out}
		}, []string{"E2S_TEST_PW_BOB is not set"}},
		{"tampered acknowledgement", alice, nil, func(string) []string {
			b := readFile(t, ack)
			b[len(b)-5] ^= 0x01
			return []string{"verify-ack", writeFile(t, "bad.ack", b), "-original", protected}
		}, []string{"acknowledgement", "do not use it"}},
		{"acknowledgement is not an acknowledgement", alice, nil, func(string) []string {
			return []string{"verify-ack", protected, "-original", protected}
		}, []string{"e2s: next:"}},
		{"unknown partner", alice, nil, func(out string) []string {
			return []string{"protect", "-to", "dave", in, out}
		}, []string{"e2s certstore add", "e2s exchange request -to ID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			stderr := tt.who.fails(t, tt.env, tt.args(out)...)
			mustContain(t, stderr, tt.wants...)
			mustNotExist(t, out)
		})
	}

	t.Run("revoked sender", func(t *testing.T) {
		b := bob.clone(t)
		b.ok(t, "certstore", "revoke", "-reason", "key compromise", "alice")
		mustContain(t, b.ok(t, "certstore", "list"), "revoked", "key compromise")
		out := filepath.Join(t.TempDir(), "out")
		mustContain(t, b.fails(t, nil, "open", protected, out), "revoked")
		mustNotExist(t, out)
	})
}

// TestConfig: the configuration file is versioned and strict, and says
// what to fix.
func TestConfig(t *testing.T) {
	tests := []struct {
		name, config string
		want         []string
	}{
		{"unknown key", "version: 1\ncredential: x\nkeystor:\n  dir: k\n", []string{"field keystor not found"}},
		{"no version", "credential: x\n", []string{"version: 0 is not supported; write version: 1"}},
		{"no credential", "version: 1\n", []string{"credential: missing"}},
		{"two password sources", "version: 1\ncredential: x\nkeystore:\n  password_env: A\n  password_file: f\n", []string{"not both"}},
		{"empty", "", []string{"empty file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &party{name: "cfg", dir: t.TempDir()}
			if err := os.WriteFile(p.config(), []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			mustContain(t, p.fails(t, nil, "keystore", "list"), append(tt.want, "fix the configuration file")...)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		p := &party{name: "cfg", dir: t.TempDir()}
		mustContain(t, p.fails(t, nil, "keystore", "list"), "does not exist")
	})
	t.Run("password file readable by others", func(t *testing.T) {
		p := &party{name: "cfg", dir: t.TempDir()}
		pw := filepath.Join(p.dir, "pw")
		if err := os.WriteFile(pw, []byte("secret\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.config(), []byte("version: 1\ncredential: x\nkeystore:\n  password_file: pw\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustContain(t, p.fails(t, nil, "keystore", "list"), "chmod 600")
		if err := os.Chmod(pw, 0o600); err != nil {
			t.Fatal(err)
		}
		p.ok(t, "keygen", "-label", "x", "-type", "ecdsa-p256")
		mustContain(t, p.ok(t, "keystore", "list"), "x *", "ECDSA", "CN=x")
	})
}

// TestHeaderSignature: the header value is checked against the sender's
// registered certificate over the exact body bytes.
func TestHeaderSignature(t *testing.T) {
	alice, bob := world.alice, world.bob
	body := []byte(`<message><order id="4711"/></message>`)
	bodyFile := writeFile(t, "body.xml", body)
	value := strings.TrimSpace(alice.ok(t, "sign-header", bodyFile))
	if strings.ContainsAny(value, "\n ") || len(value) < 100 {
		t.Fatalf("header value %q is not one base64 line", value)
	}
	mustContain(t, bob.ok(t, "verify-header", "-from", "alice", bodyFile, value), "ok: ", "signed by alice")
	// The spelling makes the same kind of value; bob accepts it too.
	value2 := strings.TrimSpace(alice.ok(t, "sign", "--detached", "--header", bodyFile))
	mustContain(t, bob.ok(t, "verify-header", "-from", "alice", bodyFile, value2), "ok: ", "signed by alice")

	tampered := bytes.Replace(body, []byte("4711"), []byte("4712"), 1)
	revoked := bob.clone(t)
	revoked.ok(t, "certstore", "revoke", "alice")
	tests := []struct {
		name  string
		who   *party
		from  string
		body  []byte
		value string
		want  string
	}{
		{"tampered body", bob, "alice", tampered, value, "altered after signing"},
		{"one byte more", bob, "alice", append(bytes.Clone(body), '\n'), value, "altered after signing"},
		{"not base64", bob, "alice", body, "%%%", "not of the expected kind"},
		{"other partner's certificate", world.carol, "bob", body, value, "not from the partner you named"},
		{"revoked certificate", revoked, "alice", body, value, "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustContain(t, tt.who.fails(t, nil, "verify-header", "-from", tt.from, writeFile(t, "b", tt.body), tt.value), tt.want)
		})
	}
}

// TestSeal: sealed envelopes with the keystore's RSA key, for oneself or
// for another party's public key; tampering and the wrong key are refused.
func TestSeal(t *testing.T) {
	alice, carol := world.alice, world.carol
	payload := document(10 << 10)
	in := writeFile(t, "record.json", payload)
	dir := t.TempDir()

	self := filepath.Join(dir, "self.env")
	alice.ok(t, "seal", in, self)
	out := filepath.Join(dir, "self.out")
	alice.ok(t, "unseal", self, out)
	if !bytes.Equal(readFile(t, out), payload) {
		t.Fatal("unsealed payload differs")
	}

	carolPEM := filepath.Join(dir, "carol.pem")
	carol.ok(t, "cert", "export", "-out", carolPEM)
	forCarol := filepath.Join(dir, "carol.env")
	mustContain(t, alice.ok(t, "seal", "-key", carolPEM, in, forCarol), "key SHA256:")
	out = filepath.Join(dir, "carol.out")
	carol.ok(t, "unseal", forCarol, out)
	if !bytes.Equal(readFile(t, out), payload) {
		t.Fatal("unsealed payload differs")
	}

	sealed := readFile(t, self)
	tests := []struct {
		name string
		who  *party
		in   []byte
		want string
	}{
		{"sealed to another key", carol, sealed, "sealed to another key"},
		{"payload byte flipped", alice, flipAt(sealed, len(sealed)/2), "altered or damaged"},
		{"truncated", alice, sealed[:len(sealed)/2], "e2s: next:"},
		{"not RSA", world.bob, sealed, "needs an RSA credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			mustContain(t, tt.who.fails(t, nil, "unseal", writeFile(t, "in.env", tt.in), out), tt.want)
			mustNotExist(t, out)
		})
	}
}

func flipAt(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}

// TestExchangeRefusals: exchanged certificates need a trust decision, and
// a completion must answer the request it claims to answer.
func TestExchangeRefusals(t *testing.T) {
	dir := t.TempDir()
	strict, err := newParty(filepath.Join(dir, "strict"), "strict", "ecdsa-p256", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(readFile(t, strict.config())), "trust_on_first_use: true", "trust_on_first_use: false", 1)
	if err := os.WriteFile(strict.config(), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	alice := world.alice.clone(t)
	req := filepath.Join(dir, "req")
	alice.ok(t, "exchange", "request", "-to", "strict", req)
	mustContain(t, strict.fails(t, nil, "exchange", "respond", req, filepath.Join(dir, "resp")), "trust_on_first_use")
	mustNotExist(t, filepath.Join(dir, "resp"))

	// An answer to someone else's request is refused.
	bob := world.bob.clone(t)
	carolReq := filepath.Join(dir, "carol-req")
	world.carol.clone(t).ok(t, "exchange", "request", "-to", "bob", carolReq)
	resp := filepath.Join(dir, "bob-resp")
	bob.ok(t, "exchange", "respond", carolReq, resp)
	mustContain(t, alice.fails(t, nil, "exchange", "complete", "-request", req, resp), "does not answer that request")
	// A request not written by us cannot be completed.
	mustContain(t, alice.fails(t, nil, "exchange", "complete", "-request", carolReq, resp), "must be one 'e2s exchange request' wrote")
}

// TestOpenSSLInterop: one protect/open in each direction with openssl 3.
func TestOpenSSLInterop(t *testing.T) {
	openssl := testutil.Requires(t, "openssl")
	alice, bob := world.alice, world.bob
	dir := t.TempDir()
	ossl := func(t *testing.T, p *party, args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Env = append(os.Environ(), p.passwordVar()+"="+p.password)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Each party's key and certificate, as openssl reads them: the key
	// straight from the keystore's PKCS#12 file.
	keyOf := func(t *testing.T, p *party) (cert, key string) {
		cert, key = filepath.Join(dir, p.name+".pem"), filepath.Join(dir, p.name+".key")
		p.ok(t, "cert", "export", "-out", cert)
		ossl(t, p, "pkcs12", "-in", filepath.Join(p.dir, "keys", p.name+".p12"), "-nocerts", "-nodes",
			"-passin", "env:"+p.passwordVar(), "-out", key)
		return cert, key
	}
	aliceCert, aliceKey := keyOf(t, alice)
	bobCert, bobKey := keyOf(t, bob)
	doc := document(30 << 10)
	docFile := writeFile(t, "doc.txt", doc)

	// The README's recipe, as written there: e2s protect -openssl, then
	// openssl cms -decrypt and openssl cms -verify, for both ciphers
	// (the openssl nesting needs no RFC 5083 authAttrs, so openssl 3.0
	// reads AES-256-GCM too).
	for _, cipher := range []string{"aes-256-gcm", "aes-256-cbc"} {
		t.Run("README recipe: e2s protect -openssl, openssl decrypt then verify/"+cipher, func(t *testing.T) {
			protected := filepath.Join(dir, "recipe-"+cipher+".p7m")
			alice.ok(t, "protect", "-openssl", "-cipher", cipher, "-to", "bob", docFile, protected)
			signed := filepath.Join(dir, "recipe-"+cipher+".signed")
			ossl(t, bob, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", protected,
				"-recip", bobCert, "-inkey", bobKey, "-out", signed)
			got := filepath.Join(dir, "recipe-"+cipher+".txt")
			ossl(t, bob, "cms", "-verify", "-binary", "-inform", "DER", "-in", signed,
				"-CAfile", aliceCert, "-purpose", "any", "-out", got)
			if !bytes.Equal(readFile(t, got), doc) {
				t.Fatal("openssl's decrypted, verified document differs")
			}
		})
	}

	t.Run("e2s protect (RFC nesting), openssl decrypt and verify", func(t *testing.T) {
		protected := filepath.Join(dir, "e2s.p7m")
		// openssl <= 3.0.19 cannot read RFC 5083 authAttrs (openssl issue
		// #26101), so such peers get AES-256-CBC EnvelopedData.
		alice.ok(t, "protect", "-to", "bob", "-cipher", "aes-256-cbc", "-compress", "off", docFile, protected)
		signed := filepath.Join(dir, "e2s.signed")
		ossl(t, bob, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", protected,
			"-recip", bobCert, "-inkey", bobKey, "-out", signed)
		// openssl writes the decrypted SignedData without its ContentInfo
		// (RFC 5652's nesting): -openssl above avoids this step.
		signedCI := writeFile(t, "signed.der", contentInfo(t, asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}, readFile(t, signed)))
		inner := filepath.Join(dir, "e2s.inner")
		ossl(t, bob, "cms", "-verify", "-binary", "-inform", "DER", "-in", signedCI,
			"-CAfile", aliceCert, "-purpose", "any", "-out", inner)
		if !bytes.Equal(readFile(t, inner), doc) {
			t.Fatal("openssl's decrypted, verified document differs")
		}
	})

	// openssl -stream output (indefinite lengths) in every form openssl
	// writes: DER, PEM and its default S/MIME, detected by e2s open; a
	// signature without signed attributes (-noattr) opens and is
	// acknowledged, and the sender checks the acknowledgement.
	for _, form := range []string{"DER", "PEM", "SMIME"} {
		t.Run("openssl -stream sign -noattr and encrypt as "+form+", e2s open and acknowledge", func(t *testing.T) {
			signed := filepath.Join(dir, "noattr-"+form+".signed")
			ossl(t, alice, "cms", "-sign", "-stream", "-noattr", "-binary", "-in", docFile, "-signer", aliceCert, "-inkey", aliceKey,
				"-md", "sha256", "-nodetach", "-outform", "DER", "-out", signed)
			protected := filepath.Join(dir, "noattr-"+form+".p7m")
			ossl(t, alice, "cms", "-encrypt", "-stream", "-binary", "-in", signed, "-aes-256-gcm", "-recip", bobCert,
				"-outform", form, "-out", protected)
			out, ack := filepath.Join(dir, "noattr-"+form+".txt"), filepath.Join(dir, "noattr-"+form+".ack")
			mustContain(t, bob.ok(t, "open", "-q", protected, out, "-ack-out", ack), "from alice")
			if !bytes.Equal(readFile(t, out), doc) {
				t.Fatal("opened document differs")
			}
			mustContain(t, alice.ok(t, "verify-ack", ack, "-original", signed), "signed file acknowledgement", "by bob")
		})
	}

	t.Run("openssl sign and encrypt, e2s open, openssl verifies the receipt", func(t *testing.T) {
		signed := filepath.Join(dir, "ossl.signed")
		ossl(t, alice, "cms", "-sign", "-binary", "-in", docFile, "-signer", aliceCert, "-inkey", aliceKey,
			"-md", "sha256", "-nodetach", "-outform", "DER", "-out", signed, "-receipt_request_to", "alice@example.com")
		protected := filepath.Join(dir, "ossl.p7m")
		ossl(t, alice, "cms", "-encrypt", "-binary", "-in", signed, "-aes256", "-recip", bobCert,
			"-outform", "DER", "-out", protected)
		out, ack := filepath.Join(dir, "ossl.txt"), filepath.Join(dir, "ossl.ack")
		mustContain(t, bob.ok(t, "open", protected, out, "-ack-out", ack), "from alice")
		if !bytes.Equal(readFile(t, out), doc) {
			t.Fatal("opened document differs")
		}
		ossl(t, alice, "cms", "-verify_receipt", ack, "-rctform", "DER", "-in", signed, "-inform", "DER",
			"-CAfile", bobCert, "-purpose", "any")
		mustContain(t, alice.ok(t, "verify-ack", ack, "-original", signed), "signed receipt (RFC 2634)", "by bob")
	})

	t.Run("openssl encrypts unsigned content, e2s refuses", func(t *testing.T) {
		protected := filepath.Join(dir, "unsigned.p7m")
		ossl(t, alice, "cms", "-encrypt", "-binary", "-in", docFile, "-aes256", "-recip", bobCert,
			"-outform", "DER", "-out", protected)
		out := filepath.Join(dir, "unsigned.txt")
		mustContain(t, bob.fails(t, nil, "open", protected, out), "refusing an unsigned document")
		mustNotExist(t, out)
	})
}

func contentInfo(t *testing.T, oid asn1.ObjectIdentifier, content []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue
	}{oid, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: content}})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// SoftHSM2 token for TestPKCS11Token, made before any e2s process starts
// (SoftHSM reads SOFTHSM2_CONF once per process; children inherit it).
const (
	softhsmModule = "/usr/lib/softhsm/libsofthsm2.so"
	tokenLabel    = "e2s-test"
	tokenBuyer    = "token-buyer" // party name; its PIN is "pw-" + name like every party's password
)

var softhsmMissing string

func setupSoftHSM(dir string) error {
	if _, err := os.Stat(softhsmModule); err != nil {
		softhsmMissing = softhsmModule + " not installed"
		return nil
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		softhsmMissing = "softhsm2-util not installed"
		return nil
	}
	tokens := filepath.Join(dir, "softhsm-tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	cfg := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", tokenLabel, "--pin", "pw-"+tokenBuyer, "--so-pin", "8765").CombinedOutput()
	if err != nil {
		return fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return nil
}

// TestPKCS11Token: the credential lives on a PKCS#11 token (SoftHSM2); the
// key never leaves it. The token signs documents, acknowledgements are
// checked against the kept SignedData, and header signatures are made on
// it. A wrong PIN is refused.
func TestPKCS11Token(t *testing.T) {
	if !haveCgo {
		testutil.Missing(t, "cgo (the PKCS#11 backend needs it; make build builds e2s with cgo)")
	}
	if softhsmMissing != "" {
		testutil.Missing(t, softhsmMissing)
	}
	dir := t.TempDir()
	tok, err := newParty(filepath.Join(dir, "tok"), "token-buyer", "ecdsa-p256",
		fmt.Sprintf("keystore:\n  pkcs11:\n    module: %s\n    token: %s\n    pin_env: %s\n", softhsmModule, tokenLabel, "E2S_TEST_PW_TOKEN-BUYER"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, tok.ok(t, "keystore", "list"), "token-buyer *", "ECDSA")
	bob := world.bob.clone(t)
	if err := exchange(tok, bob); err != nil {
		t.Fatal(err)
	}

	doc := document(20 << 10)
	protected, signed := filepath.Join(dir, "doc.p7m"), filepath.Join(dir, "doc.signed")
	tok.ok(t, "protect", "-to", "bob", "-ack", "-keep", signed, writeFile(t, "doc.txt", doc), protected)
	out, ack := filepath.Join(dir, "doc.txt"), filepath.Join(dir, "doc.ack")
	mustContain(t, bob.ok(t, "open", protected, out, "-ack-out", ack, "-from", "token-buyer"), "from token-buyer")
	if !bytes.Equal(readFile(t, out), doc) {
		t.Fatal("opened document differs")
	}
	mustContain(t, tok.ok(t, "verify-ack", ack, "-original", signed), "signed receipt (RFC 2634)", "by bob")

	body := writeFile(t, "body.xml", []byte("<message/>"))
	value := strings.TrimSpace(tok.ok(t, "sign-header", body))
	bob.ok(t, "verify-header", "-from", "token-buyer", body, value)

	mustContain(t, tok.fails(t, []string{"E2S_TEST_PW_TOKEN-BUYER=0000"}, "keystore", "list"), "token PIN) is wrong")
}

// TestKeystoreImport: a credential made elsewhere (here by openssl) is
// imported from PKCS#12 and re-encrypted under the keystore password.
func TestKeystoreImport(t *testing.T) {
	openssl := testutil.Requires(t, "openssl")
	dir := t.TempDir()
	key, cert, p12 := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "in.p12")
	for _, args := range [][]string{
		{"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=imported", "-days", "30"},
		{"pkcs12", "-export", "-inkey", key, "-in", cert, "-out", p12, "-passout", "pass:import-secret"},
	} {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	carol := world.carol.clone(t)
	tests := []struct {
		name, password, want string
		ok                   bool
	}{
		// The file's password is blamed, not the keystore's.
		{"wrong file password", "guess", "e2s: next: put the PKCS#12 file's password in the variable -password-env names", false},
		{"right file password", "import-secret", "imported imported: CN=imported (ECDSA)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"keystore", "import", "-label", "imported", "-password-env", "P12_PW", p12}
			env := []string{"P12_PW=" + tt.password}
			if !tt.ok {
				stderr := carol.fails(t, env, args...)
				mustContain(t, stderr, tt.want)
				if strings.Contains(stderr, "keystore password (or token PIN) is wrong") {
					t.Fatalf("the keystore password is blamed:\n%s", stderr)
				}
				return
			}
			out, stderr, err := carol.runEnv(env, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			mustContain(t, out, tt.want)
			mustContain(t, carol.ok(t, "keystore", "list"), "carol *", "imported ", "CN=imported")
		})
	}
}

// TestFilesAndInterrupts: an existing output is kept without -force;
// missing inputs and output directories say what to do; SIGTERM (what
// Ctrl-C also does) during protect stops it with a message, leaves no
// temporary file and the existing output untouched; a temporary file left
// by a killed run is removed by the next run writing the same output.
func TestFilesAndInterrupts(t *testing.T) {
	alice := world.alice
	dir := t.TempDir()
	in := writeFile(t, "doc.txt", document(10<<10))
	out := filepath.Join(dir, "doc.p7m")
	alice.ok(t, "protect", "-to", "bob", in, out)
	first := readFile(t, out)

	mustContain(t, alice.fails(t, nil, "protect", "-to", "bob", in, out), "output file exists", "e2s: next:", "-force")
	if !bytes.Equal(readFile(t, out), first) {
		t.Fatal("existing output changed without -force")
	}
	alice.ok(t, "protect", "-force", "-to", "bob", in, out)
	if bytes.Equal(readFile(t, out), first) {
		t.Fatal("-force did not replace the output")
	}
	kept := readFile(t, out)

	mustContain(t, alice.fails(t, nil, "protect", "-to", "bob", filepath.Join(dir, "missing.txt"), filepath.Join(dir, "x.p7m")),
		"no such input file", "e2s: next: check the input file's name")
	mustContain(t, alice.fails(t, nil, "protect", "-to", "bob", in, filepath.Join(dir, "nodir", "x.p7m")),
		"no such directory", "e2s: next: create that directory")
	mustContain(t, alice.fails(t, nil, "open", filepath.Join(dir, "missing.p7m"), filepath.Join(dir, "x.txt")),
		"no such input file", "e2s: next:")

	t.Run("SIGTERM during protect", func(t *testing.T) {
		fifo := filepath.Join(dir, "slow-input")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self, "-config", alice.config(), "protect", "-force", "-q", "-to", "bob", fifo, out)
		cmd.Env = append(os.Environ(), asMain+"=1", alice.passwordVar()+"="+alice.password)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Feed some data, and once e2s is at work (the temporary file
		// made), interrupt it while it waits for more input: the pipe
		// stays open, so only the interrupt can end it.
		w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(document(1 << 20)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 200 && len(partials(t, dir)) == 0; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if len(partials(t, dir)) == 0 {
			t.Fatal("no temporary output while protecting")
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want 1\n%s", err, stderr.String())
		}
		mustContain(t, stderr.String(), "interrupted", "e2s: next: stopped before the end")
		if p := partials(t, dir); len(p) != 0 {
			t.Fatalf("temporary files left: %v", p)
		}
		if !bytes.Equal(readFile(t, out), kept) {
			t.Fatal("the existing output changed")
		}
	})

	t.Run("leftover of a killed run is removed", func(t *testing.T) {
		dead := exec.Command("true")
		if err := dead.Run(); err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(dir, fmt.Sprintf(".doc.p7m.e2s-partial-%d-123", dead.Process.Pid))
		if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
		// One of a process still running (this test) stays.
		live := filepath.Join(dir, fmt.Sprintf(".doc.p7m.e2s-partial-%d-456", os.Getpid()))
		if err := os.WriteFile(live, []byte("busy"), 0o600); err != nil {
			t.Fatal(err)
		}
		alice.ok(t, "protect", "-force", "-to", "bob", in, out)
		mustNotExist(t, stale)
		if _, err := os.Stat(live); err != nil {
			t.Fatalf("a running process's temporary file was removed: %v", err)
		}
		os.Remove(live)
	})
}

// partials lists e2s temporary files in dir.
func partials(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.e2s-partial-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSealTRISA: seal -trisa builds a TRISA Payload from identity and
// transaction JSON files (the reference peer's acceptance is proved in
// internal/client TestTRISAPayloadReferencePeer); unseal -trisa prints them
// back, and refuses a raw envelope with a hint.
func TestSealTRISA(t *testing.T) {
	alice := world.alice
	dir := t.TempDir()
	id := writeFile(t, "identity.json", []byte(`{"originator": {"originator_persons": [{"natural_person": {"name": {"name_identifiers": [
		{"primary_identifier": "Doe", "secondary_identifier": "Jane", "name_identifier_type": "NATURAL_PERSON_NAME_TYPE_CODE_LEGL"}]}}}]}}`))
	tx := writeFile(t, "transaction.json", []byte(`{"txid": "abc123", "amount": 1.5, "network": "ETH"}`))
	sealed := filepath.Join(dir, "trisa.env")
	mustContain(t, alice.ok(t, "seal", "-trisa", id, tx, sealed), "sealed TRISA payload")
	out := alice.ok(t, "unseal", "-trisa", sealed)
	mustContain(t, out, `"Doe"`, `"txid": "abc123"`, `"network": "ETH"`, `"sent_at"`)
	raw := filepath.Join(dir, "raw.env")
	alice.ok(t, "seal", id, raw)
	mustContain(t, alice.fails(t, nil, "unseal", "-trisa", raw), "not a TRISA payload", "e2s: next:", "'e2s unseal IN OUT'")
	mustContain(t, alice.fails(t, nil, "seal", "-trisa", tx, id, filepath.Join(dir, "x.env")), "identity (IVMS101", "e2s: next:")
	mustContain(t, alice.ok(t, "help"), "raw IN for records at rest")
}
