package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testBody = []byte(`<?xml version="1.0" encoding="UTF-8"?><GetFileRequest><FileID>report-2026.pdf</FileID></GetFileRequest>`)

func TestHeaderSignatureInterop(t *testing.T) {
	p := getPKI(t)
	for _, kind := range []string{"rsa", "p256", "p384"} {
		id := p.ids[kind]
		t.Run(kind+"/go signs, openssl verifies", func(t *testing.T) {
			value, err := SignHeader(testBody, id.key, id.cert())
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(value, "\r\n ") {
				t.Fatal("header value is not one line")
			}
			der, err := base64.StdEncoding.DecodeString(value)
			if err != nil {
				t.Fatal(err)
			}
			// As bit-repository message signing does it: the signer certificate given on the command line.
			if _, err := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "new.sig", der),
				"-content", writeFile(t, "message", testBody), "-certfile", id.certFile, "-noverify",
				"-out", filepath.Join(t.TempDir(), "out")); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyHeader(value, testBody, id.cert(), HeaderVerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(kind+"/openssl signs, go verifies", func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "new.sig")
			if _, err := openssl(t, "cms", "-sign", "-binary", "-nocerts", "-md", "sha512",
				"-in", writeFile(t, "message", testBody), "-signer", id.certFile, "-inkey", id.keyFile,
				"-outform", "DER", "-out", out); err != nil {
				t.Fatal(err)
			}
			der, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			si, err := VerifyHeader(base64.StdEncoding.EncodeToString(der), testBody, id.cert(), HeaderVerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if si.Hash != crypto.SHA512 || !si.Certificate.Equal(id.cert()) {
				t.Fatalf("unexpected signer %+v", si)
			}
		})
	}
}

func TestVerifyHeaderFailures(t *testing.T) {
	p := getPKI(t)
	id := p.ids["p256"]
	sign := func(t *testing.T, id *testIdentity) string {
		v, err := SignHeader(testBody, id.key, id.cert())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	b64 := func(t *testing.T, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(der)
	}
	tests := []struct {
		name       string
		value      func(t *testing.T) string
		body       []byte
		registered *x509.Certificate
		opts       HeaderVerifyOptions
		want       error
	}{
		{"tampered body", func(t *testing.T) string { return sign(t, id) },
			append(bytes.Clone(testBody), ' '), id.cert(), HeaderVerifyOptions{}, ErrDigestMismatch},
		{"wrong registered certificate", func(t *testing.T) string { return sign(t, id) },
			testBody, p.ids["p384"].cert(), HeaderVerifyOptions{}, ErrSignerNotFound},
		{"expired certificate", func(t *testing.T) string { return sign(t, p.expired) },
			testBody, p.expired.cert(), HeaderVerifyOptions{}, ErrCertificateExpired},
		{"checked after expiry", func(t *testing.T) string { return sign(t, id) },
			testBody, id.cert(), HeaderVerifyOptions{CurrentTime: time.Now().Add(48 * time.Hour)}, ErrCertificateExpired},
		{"revoked by CRL", func(t *testing.T) string { return sign(t, p.revoked) },
			testBody, p.revoked.cert(), HeaderVerifyOptions{CRLs: []*x509.RevocationList{p.crl}}, ErrCertificateRevoked},
		{"revoked by callback", func(t *testing.T) string { return sign(t, id) }, testBody, id.cert(),
			HeaderVerifyOptions{CheckRevocation: func(c *x509.Certificate, _ []*x509.Certificate) error {
				return errors.New("identity disabled")
			}}, ErrCertificateRevoked},
		{"not base64", func(t *testing.T) string { return "not*base64" },
			testBody, id.cert(), HeaderVerifyOptions{}, ErrMalformed},
		{"attached signature", func(t *testing.T) string {
			der, err := Sign(testBody, id.key, id.chain, SignOptions{Hash: crypto.SHA512, OmitCertificates: true})
			return b64(t, der, err)
		}, testBody, id.cert(), HeaderVerifyOptions{}, ErrMalformed},
		{"SHA-256 signature", func(t *testing.T) string {
			der, err := Sign(testBody, id.key, id.chain, SignOptions{Detached: true, OmitCertificates: true})
			return b64(t, der, err)
		}, testBody, id.cert(), HeaderVerifyOptions{}, ErrUnsupportedAlgorithm},
		{"embedded certificate of another signer is ignored", func(t *testing.T) string {
			other := p.ids["p384"]
			der, err := Sign(testBody, other.key, other.chain, SignOptions{Hash: crypto.SHA512, Detached: true})
			return b64(t, der, err)
		}, testBody, id.cert(), HeaderVerifyOptions{}, ErrSignerNotFound},
		{"tampered signature", func(t *testing.T) string {
			der, _ := base64.StdEncoding.DecodeString(sign(t, id))
			der[len(der)-4] ^= 1
			return b64(t, der, nil)
		}, testBody, id.cert(), HeaderVerifyOptions{}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyHeader(tt.value(t), tt.body, tt.registered, tt.opts); !errors.Is(err, tt.want) {
				t.Fatalf("VerifyHeader error = %v, want %v", err, tt.want)
			}
		})
	}
}
