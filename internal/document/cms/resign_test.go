package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOfferAcceptanceCountersignature follows the E2S offer protocol:
// merchant signs the offer, the buyer adds a signature, the merchant signs
// again; openssl and Go both verify all three signers.
func TestOfferAcceptanceCountersignature(t *testing.T) {
	p := getPKI(t)
	merchant, buyer := p.ids["rsa"], p.ids["p256"]
	for _, detached := range []bool{false, true} {
		t.Run(map[bool]string{false: "attached", true: "detached"}[detached], func(t *testing.T) {
			offer, err := Sign(testContent, merchant.key, merchant.chain[:2], SignOptions{Detached: detached})
			if err != nil {
				t.Fatal(err)
			}
			var content []byte
			if detached {
				content = testContent
			}
			accepted, err := AddSigner(offer, content, buyer.key, buyer.chain[:2], SignOptions{Hash: crypto.SHA384})
			if err != nil {
				t.Fatal(err)
			}
			contract, err := AddSigner(accepted, content, merchant.key, merchant.chain[:2], SignOptions{PSS: true, Hash: crypto.SHA512})
			if err != nil {
				t.Fatal(err)
			}
			s, err := Verify(contract, VerifyOptions{Roots: p.roots, Content: content})
			if err != nil {
				t.Fatal(err)
			}
			want := []*x509.Certificate{merchant.cert(), buyer.cert(), merchant.cert()}
			if len(s.Signers) != len(want) {
				t.Fatalf("%d signers, want %d", len(s.Signers), len(want))
			}
			for i, w := range want {
				if !s.Signers[i].Certificate.Equal(w) {
					t.Fatalf("signer %d is %q, want %q", i, s.Signers[i].Certificate.Subject, w.Subject)
				}
			}
			if len(s.Certificates) != 3 {
				t.Fatalf("%d embedded certificates, want 3 (no duplicates)", len(s.Certificates))
			}
			args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "c.der", contract),
				"-CAfile", p.caFile, "-out", filepath.Join(t.TempDir(), "out")}
			if detached {
				args = append(args, "-content", writeFile(t, "content", testContent))
			}
			if _, err := openssl(t, args...); err != nil {
				t.Fatal(err)
			}
			// A tampered merchant-again signature fails the whole contract.
			bad := bytes.Clone(contract)
			bad[len(bad)-3] ^= 1
			if _, err := Verify(bad, VerifyOptions{Roots: p.roots, Content: content}); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("tampered contract: %v", err)
			}
		})
	}
}

// TestVerifyOpenSSLResigned has openssl add the buyer's signature to a
// Go-signed offer.
func TestVerifyOpenSSLResigned(t *testing.T) {
	p := getPKI(t)
	merchant, buyer := p.ids["p384"], p.ids["rsa"]
	offer, err := Sign(testContent, merchant.key, merchant.chain[:2], SignOptions{Hash: crypto.SHA384})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "resigned.der")
	if _, err := openssl(t, "cms", "-resign", "-binary", "-inform", "DER", "-in", writeFile(t, "offer.der", offer),
		"-signer", buyer.certFile, "-inkey", buyer.keyFile, "-certfile", p.inter.certFile, "-md", "sha384", // -resign reuses a signer's digest
		"-outform", "DER", "-out", out, "-nodetach"); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Verify(der, VerifyOptions{Roots: p.roots})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Signers) != 2 || !s.Signers[0].Certificate.Equal(merchant.cert()) || !s.Signers[1].Certificate.Equal(buyer.cert()) {
		t.Fatalf("unexpected signers %+v", s.Signers)
	}
	if !bytes.Equal(s.Content, testContent) {
		t.Fatal("content differs")
	}
}
