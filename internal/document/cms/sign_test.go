package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var testContent = []byte("offer: 12 crates of widgets at 42.00 EUR\r\n\x00binary\xff tail\n")

type signCase struct {
	key  string
	pss  bool
	hash crypto.Hash
}

func (c signCase) String() string {
	alg := c.key
	if c.pss {
		alg += "-pss"
	}
	return fmt.Sprintf("%s/%v", alg, c.hash)
}

func signCases() []signCase {
	var cases []signCase
	for _, k := range []struct {
		key string
		pss bool
	}{{"rsa", false}, {"rsa", true}, {"p256", false}, {"p384", false}} {
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			cases = append(cases, signCase{k.key, k.pss, h})
		}
	}
	return cases
}

// TestSignVerifiedByOpenSSL signs with Go and verifies with openssl cms.
func TestSignVerifiedByOpenSSL(t *testing.T) {
	p := getPKI(t)
	for _, c := range signCases() {
		for _, detached := range []bool{false, true} {
			for _, omit := range []bool{false, true} {
				name := fmt.Sprintf("%v/detached=%v/nocerts=%v", c, detached, omit)
				t.Run(name, func(t *testing.T) {
					id := p.ids[c.key]
					der, err := Sign(testContent, id.key, id.chain[:2], SignOptions{
						Hash: c.hash, Detached: detached, PSS: c.pss, OmitCertificates: omit,
					})
					if err != nil {
						t.Fatal(err)
					}
					sig := writeFile(t, "sig.der", der)
					out := filepath.Join(t.TempDir(), "out")
					args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
						"-CAfile", p.caFile, "-out", out}
					if detached {
						args = append(args, "-content", writeFile(t, "content", testContent))
					}
					if omit {
						// -certfile only finds the signer; openssl builds the
						// chain from embedded certificates and the trust store,
						// so the intermediate joins the CA file here.
						args = append(args, "-certfile", certsPEM(t, id.cert()))
						args[slices.Index(args, "-CAfile")+1] = certsPEM(t, p.root.cert(), p.inter.cert())
					}
					if _, err := openssl(t, args...); err != nil {
						t.Fatal(err)
					}
					got, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, testContent) {
						t.Fatalf("openssl output %q, want %q", got, testContent)
					}
					// And Go verifies its own output.
					opts := VerifyOptions{Roots: p.roots, Intermediates: []*x509.Certificate{p.inter.cert()}}
					if detached {
						opts.Content = testContent
					}
					if omit {
						opts.Registered = []*x509.Certificate{id.cert()}
					}
					s, err := Verify(der, opts)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(s.Content, testContent) || len(s.Signers) != 1 ||
						!s.Signers[0].Certificate.Equal(id.cert()) || s.Signers[0].Hash != c.hash {
						t.Fatalf("unexpected result %+v", s)
					}
				})
			}
		}
	}
}

// TestVerifyOpenSSLSignature signs with openssl cms and verifies with Go.
func TestVerifyOpenSSLSignature(t *testing.T) {
	p := getPKI(t)
	mdName := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}
	for _, c := range signCases() {
		for _, detached := range []bool{false, true} {
			for _, noattr := range []bool{false, true} {
				name := fmt.Sprintf("%v/detached=%v/noattr=%v", c, detached, noattr)
				t.Run(name, func(t *testing.T) {
					id := p.ids[c.key]
					out := filepath.Join(t.TempDir(), "sig.der")
					args := []string{"cms", "-sign", "-binary", "-in", writeFile(t, "content", testContent),
						"-signer", id.certFile, "-inkey", id.keyFile, "-md", mdName[c.hash],
						"-certfile", p.inter.certFile, "-outform", "DER", "-out", out}
					if !detached {
						args = append(args, "-nodetach")
					}
					if noattr {
						args = append(args, "-noattr")
					}
					if c.pss {
						args = append(args, "-keyopt", "rsa_padding_mode:pss")
					}
					if _, err := openssl(t, args...); err != nil {
						t.Fatal(err)
					}
					der, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					opts := VerifyOptions{Roots: p.roots}
					if detached {
						opts.Content = testContent
					}
					s, err := Verify(der, opts)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(s.Content, testContent) || !s.Signers[0].Certificate.Equal(id.cert()) {
						t.Fatalf("unexpected result %+v", s)
					}
					if len(s.Signers[0].Chain) != 3 {
						t.Fatalf("chain length %d, want 3", len(s.Signers[0].Chain))
					}
				})
			}
		}
	}
}

// TestVerifyStreamedBER checks BER (indefinite length, chunked OCTET
// STRING) input written by openssl -stream.
func TestVerifyStreamedBER(t *testing.T) {
	p := getPKI(t)
	id := p.ids["p256"]
	big := bytes.Repeat(testContent, 300)
	out := filepath.Join(t.TempDir(), "sig.der")
	if _, err := openssl(t, "cms", "-sign", "-binary", "-stream", "-nodetach", "-in", writeFile(t, "c", big),
		"-signer", id.certFile, "-inkey", id.keyFile, "-certfile", p.inter.certFile,
		"-outform", "DER", "-out", out); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if der[1] != 0x80 {
		t.Fatalf("openssl -stream did not write indefinite length (%x)", der[:4])
	}
	s, err := Verify(der, VerifyOptions{Roots: p.roots})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Content, big) {
		t.Fatal("content differs")
	}
}

func TestVerifyFailures(t *testing.T) {
	p := getPKI(t)
	rsaID, ecID := p.ids["rsa"], p.ids["p256"]
	sign := func(t *testing.T, id *testIdentity, opts SignOptions) []byte {
		t.Helper()
		der, err := Sign(testContent, id.key, id.chain[:2], opts)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name string
		der  func(t *testing.T) []byte
		opts VerifyOptions
		want error
	}{
		{
			name: "tampered attached content",
			der: func(t *testing.T) []byte {
				der := sign(t, ecID, SignOptions{})
				i := bytes.Index(der, testContent)
				return flip(der, i+3)
			},
			opts: VerifyOptions{Roots: p.roots},
			want: ErrDigestMismatch,
		},
		{
			name: "tampered detached content",
			der:  func(t *testing.T) []byte { return sign(t, rsaID, SignOptions{Detached: true}) },
			opts: VerifyOptions{Roots: p.roots, Content: flip(testContent, 0)},
			want: ErrDigestMismatch,
		},
		{
			name: "tampered signature",
			der: func(t *testing.T) []byte {
				der := sign(t, rsaID, SignOptions{PSS: true})
				return flip(der, len(der)-5)
			},
			opts: VerifyOptions{Roots: p.roots},
			want: ErrBadSignature,
		},
		{
			name: "tampered signed content without attributes",
			der: func(t *testing.T) []byte {
				der := sign(t, rsaID, SignOptions{NoSignedAttributes: true})
				return flip(der, bytes.Index(der, testContent))
			},
			opts: VerifyOptions{Roots: p.roots},
			want: ErrBadSignature,
		},
		{
			name: "detached without content",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{Detached: true}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrNoContent,
		},
		{
			name: "no trust anchor",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{}) },
			opts: VerifyOptions{},
			want: ErrNoTrustAnchor,
		},
		{
			name: "unrelated root",
			der:  func(t *testing.T) []byte { return sign(t, p.other, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrUntrusted,
		},
		{
			name: "certificate-less without registered certificate",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{OmitCertificates: true}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrSignerNotFound,
		},
		{
			name: "wrong registered certificate",
			der: func(t *testing.T) []byte {
				return sign(t, ecID, SignOptions{OmitCertificates: true, Detached: true})
			},
			opts: VerifyOptions{Registered: []*x509.Certificate{p.ids["p384"].cert()}, Content: testContent},
			want: ErrSignerNotFound,
		},
		{
			name: "embedded certificate is not the registered one",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{}) },
			opts: VerifyOptions{Registered: []*x509.Certificate{p.ids["p384"].cert()}},
			want: ErrUntrusted,
		},
		{
			name: "expired certificate via roots",
			der:  func(t *testing.T) []byte { return sign(t, p.expired, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrCertificateExpired,
		},
		{
			name: "expired registered certificate",
			der:  func(t *testing.T) []byte { return sign(t, p.expired, SignOptions{OmitCertificates: true}) },
			opts: VerifyOptions{Registered: []*x509.Certificate{p.expired.cert()}},
			want: ErrCertificateExpired,
		},
		{
			name: "not yet valid at given time",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots, CurrentTime: time.Now().Add(-30 * 24 * time.Hour)},
			want: ErrCertificateExpired,
		},
		{
			name: "revoked by CRL",
			der:  func(t *testing.T) []byte { return sign(t, p.revoked, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots, CRLs: []*x509.RevocationList{p.crl}},
			want: ErrCertificateRevoked,
		},
		{
			name: "revoked registered certificate by CRL",
			der:  func(t *testing.T) []byte { return sign(t, p.revoked, SignOptions{OmitCertificates: true}) },
			opts: VerifyOptions{Registered: []*x509.Certificate{p.revoked.cert()}, CRLs: []*x509.RevocationList{p.crl}},
			want: ErrCertificateRevoked,
		},
		{
			name: "revoked by callback",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots, CheckRevocation: func(*x509.Certificate, []*x509.Certificate) error {
				return errors.New("on hold")
			}},
			want: ErrCertificateRevoked,
		},
		{
			name: "key usage forbids signing",
			der:  func(t *testing.T) []byte { return sign(t, p.noSign, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrKeyUsage,
		},
		{
			name: "extended key usage mismatch",
			der:  func(t *testing.T) []byte { return sign(t, ecID, SignOptions{}) },
			opts: VerifyOptions{Roots: p.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}},
			want: ErrKeyUsage,
		},
		{
			name: "not signed data",
			der:  func(t *testing.T) []byte { return contentInfo(oidData, []byte{0x04, 0x00}) },
			opts: VerifyOptions{Roots: p.roots},
			want: ErrUnexpectedContentType,
		},
		{
			name: "truncated",
			der: func(t *testing.T) []byte {
				der := sign(t, ecID, SignOptions{})
				return der[:len(der)-10]
			},
			opts: VerifyOptions{Roots: p.roots},
			want: ErrMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Verify(tt.der(t), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignRejectsMismatchedKey(t *testing.T) {
	p := getPKI(t)
	_, err := Sign(testContent, p.ids["p256"].key, p.ids["rsa"].chain, SignOptions{})
	if !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("Sign error = %v, want %v", err, ErrUnsupportedKey)
	}
}

func TestSignOptionsVariants(t *testing.T) {
	p := getPKI(t)
	tests := []struct {
		name   string
		id     *testIdentity
		opts   SignOptions
		verify VerifyOptions
	}{
		{"subject key identifier", p.ids["rsa"], SignOptions{SubjectKeyID: true, PSS: true}, VerifyOptions{Roots: p.roots}},
		{"no signed attributes", p.ids["p384"], SignOptions{NoSignedAttributes: true, Hash: crypto.SHA384}, VerifyOptions{Roots: p.roots}},
		{"skip trust of an unknown root", p.other, SignOptions{}, VerifyOptions{SkipTrust: true}},
		{"opaque crypto.Signer (RSA-PSS)", &testIdentity{key: opaqueSigner{p.ids["rsa"].key}, chain: p.ids["rsa"].chain},
			SignOptions{PSS: true, Hash: crypto.SHA512}, VerifyOptions{Roots: p.roots}},
		{"opaque crypto.Signer (ECDSA)", &testIdentity{key: opaqueSigner{p.ids["p384"].key}, chain: p.ids["p384"].chain},
			SignOptions{}, VerifyOptions{Roots: p.roots}},
		{"signing time kept", p.ids["p256"], SignOptions{SigningTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, VerifyOptions{Roots: p.roots}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := Sign(testContent, tt.id.key, tt.id.chain, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Verify(der, tt.verify)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.opts.SigningTime.IsZero() && !s.Signers[0].SigningTime.Equal(tt.opts.SigningTime) {
				t.Fatalf("signing time %v, want %v", s.Signers[0].SigningTime, tt.opts.SigningTime)
			}
			if tt.verify.SkipTrust && s.Signers[0].Chain != nil {
				t.Fatal("chain reported although trust was skipped")
			}
			ca := p.caFile
			if tt.verify.SkipTrust {
				ca = p.otherCA.certFile
			}
			if _, err := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "s.der", der),
				"-CAfile", ca, "-out", filepath.Join(t.TempDir(), "out")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// opaqueSigner hides the concrete key type, as a token key would.
type opaqueSigner struct{ k crypto.Signer }

func (o opaqueSigner) Public() crypto.PublicKey { return o.k.Public() }
func (o opaqueSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.k.Sign(r, digest, opts)
}
