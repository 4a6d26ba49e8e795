package cms

import (
	"bytes"
	"crypto"
	"errors"
	"path/filepath"

	"golang.org/x/crypto/cryptobyte"
	"testing"
)

func TestCounterSign(t *testing.T) {
	p := getPKI(t)
	merchant, buyer := p.ids["rsa"], p.ids["p256"]
	offer, err := Sign(testContent, merchant.key, merchant.chain[:2], SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := CounterSign(offer, 0, buyer.key, buyer.chain[:2], SignOptions{Hash: crypto.SHA384})
	if err != nil {
		t.Fatal(err)
	}
	// The merchant's confirmation is a second countersignature on the
	// offer's signature.
	contract, err := CounterSign(accepted, 0, merchant.key, merchant.chain[:2], SignOptions{PSS: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Verify(contract, VerifyOptions{Roots: p.roots})
	if err != nil {
		t.Fatal(err)
	}
	cs := s.Signers[0].CounterSignatures
	if len(s.Signers) != 1 || len(cs) != 2 {
		t.Fatalf("%d signers, %d countersignatures; want 1, 2", len(s.Signers), len(cs))
	}
	got := map[string]bool{}
	for _, c := range cs {
		got[c.Certificate.Subject.CommonName] = true
		if len(c.Chain) != 3 {
			t.Fatalf("countersigner %q chain length %d", c.Certificate.Subject.CommonName, len(c.Chain))
		}
	}
	if !got["rsa"] || !got["p256"] {
		t.Fatalf("countersigners %v", got)
	}
	// openssl still verifies the main signature of a countersigned message.
	if _, err := openssl(t, "cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "c.der", contract),
		"-CAfile", p.caFile, "-out", filepath.Join(t.TempDir(), "out")); err != nil {
		t.Fatal(err)
	}

	t.Run("tampered countersignature", func(t *testing.T) {
		// The buyer's ECDSA countersignature value sits inside the unsigned
		// attributes; find it by its certificate's serial-bearing SignerInfo.
		si := mustParse(t, accepted).signerInfos[0]
		attrs, _ := parseAttributes(si.unsignedAttrs)
		var c signerInfo
		for _, a := range attrs {
			s := cryptoString(a.values[0])
			readSignerInfo(&s, &c)
		}
		bad := bytes.Clone(accepted)
		i := bytes.Index(bad, c.signature)
		bad[i+len(c.signature)-2] ^= 1
		if _, err := Verify(bad, VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("Verify error = %v, want %v", err, ErrBadSignature)
		}
	})
	t.Run("untrusted countersigner", func(t *testing.T) {
		der, err := CounterSign(offer, 0, p.other.key, p.other.chain[:1], SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(der, VerifyOptions{Roots: p.roots}); !errors.Is(err, ErrUntrusted) {
			t.Fatalf("Verify error = %v, want %v", err, ErrUntrusted)
		}
	})
	t.Run("no such signer", func(t *testing.T) {
		if _, err := CounterSign(offer, 1, buyer.key, buyer.chain, SignOptions{}); !errors.Is(err, ErrNoSigners) {
			t.Fatalf("CounterSign error = %v", err)
		}
	})
}

func mustParse(t *testing.T, der []byte) *signedData {
	t.Helper()
	sd, err := parseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	return sd
}

func cryptoString(b []byte) cryptobyte.String { return cryptobyte.String(b) }
