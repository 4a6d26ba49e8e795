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

func requestReceipt() *ReceiptRequest {
	return &ReceiptRequest{ReceiptsTo: []string{"merchant@example.test"}}
}

// verifyReceiptOpenSSL runs openssl cms -verify_receipt.
func verifyReceiptOpenSSL(t *testing.T, p *testPKI, receipt, original []byte) error {
	t.Helper()
	_, err := openssl(t, "cms", "-verify_receipt", writeFile(t, "rcpt.der", receipt), "-rctform", "DER",
		"-in", writeFile(t, "orig.der", original), "-inform", "DER", "-CAfile", p.caFile)
	return err
}

func TestSignedReceiptInterop(t *testing.T) {
	p := getPKI(t)
	sender, recipient := p.ids["rsa"], p.ids["p256"]
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA512} {
		t.Run("go original, go receipt, openssl verifies/"+h.String(), func(t *testing.T) {
			orig, err := Sign(testContent, sender.key, sender.chain[:2], SignOptions{ReceiptRequest: requestReceipt()})
			if err != nil {
				t.Fatal(err)
			}
			rcpt, err := SignReceipt(orig, VerifyOptions{Roots: p.roots}, recipient.key, recipient.chain[:2], SignOptions{Hash: h})
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyReceiptOpenSSL(t, p, rcpt, orig); err != nil {
				t.Fatal(err)
			}
			r, err := VerifyReceipt(rcpt, orig, VerifyOptions{Roots: p.roots})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Signer.Certificate.Equal(recipient.cert()) || len(r.ContentIdentifier) != 32 {
				t.Fatalf("unexpected receipt %+v", r)
			}
		})
	}
	t.Run("openssl original and receipt, go verifies", func(t *testing.T) {
		dir := t.TempDir()
		orig, rcpt := filepath.Join(dir, "orig.der"), filepath.Join(dir, "rcpt.der")
		if _, err := openssl(t, "cms", "-sign", "-binary", "-nodetach", "-in", writeFile(t, "c", testContent),
			"-signer", sender.certFile, "-inkey", sender.keyFile, "-certfile", p.inter.certFile,
			"-receipt_request_to", "merchant@example.test", "-receipt_request_all",
			"-outform", "DER", "-out", orig); err != nil {
			t.Fatal(err)
		}
		if _, err := openssl(t, "cms", "-sign_receipt", "-in", orig, "-inform", "DER",
			"-signer", recipient.certFile, "-inkey", recipient.keyFile, "-certfile", p.inter.certFile,
			"-CAfile", p.caFile, "-outform", "DER", "-out", rcpt); err != nil {
			t.Fatal(err)
		}
		origDER, _ := os.ReadFile(orig)
		rcptDER, _ := os.ReadFile(rcpt)
		r, err := VerifyReceipt(rcptDER, origDER, VerifyOptions{Roots: p.roots})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Signer.Certificate.Equal(recipient.cert()) {
			t.Fatal("wrong receipt signer")
		}
		// And a Go receipt for the openssl original passes openssl.
		goRcpt, err := SignReceipt(origDER, VerifyOptions{Roots: p.roots}, recipient.key, recipient.chain[:2], SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyReceiptOpenSSL(t, p, goRcpt, origDER); err != nil {
			t.Fatal(err)
		}
	})
}

// TestFileAcknowledgement runs the document flow: protect, open,
// acknowledge, and the sender checks the acknowledgement.
func TestFileAcknowledgement(t *testing.T) {
	p := getPKI(t)
	sender, recipient := p.ids["p384"], p.ids["rsa"]
	doc := bytes.Repeat([]byte("PO-4711;widget;12;42.00\n"), 100)
	for _, withRequest := range []bool{true, false} {
		t.Run(map[bool]string{true: "receipt requested", false: "no receipt request"}[withRequest], func(t *testing.T) {
			so := SignOptions{}
			if withRequest {
				so.ReceiptRequest = requestReceipt()
			}
			prot, err := ProtectDocument(doc, sender.key, sender.chain[:2], []*x509.Certificate{recipient.cert()},
				ProtectOptions{Sign: so})
			if err != nil {
				t.Fatal(err)
			}
			o, err := Open(prot.Message, recipient.cert(), recipient.key, OpenOptions{Verify: VerifyOptions{Roots: p.roots}})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(o.SignedData, prot.SignedData) {
				t.Fatal("opened SignedData differs from the sender's")
			}
			ack, err := Acknowledge(o.SignedData, o.Content, "orders/PO-4711.csv", recipient.key, recipient.chain[:2],
				AckOptions{Verify: VerifyOptions{Roots: p.roots}, Sign: SignOptions{Hash: crypto.SHA384}})
			if err != nil {
				t.Fatal(err)
			}
			a, err := VerifyAcknowledgement(ack, prot.SignedData, doc, VerifyOptions{Roots: p.roots})
			if err != nil {
				t.Fatal(err)
			}
			if a.FileName != "orders/PO-4711.csv" || a.FileSize != int64(len(doc)) || a.FileHash != crypto.SHA384 ||
				!a.Signer.Certificate.Equal(recipient.cert()) {
				t.Fatalf("unexpected acknowledgement %+v", a)
			}
			err = verifyReceiptOpenSSL(t, p, ack, prot.SignedData)
			if withRequest && err != nil {
				t.Fatalf("openssl rejects the acknowledgement as a receipt: %v", err)
			}
			if !withRequest && err == nil {
				t.Fatal("openssl accepted an unsolicited acknowledgement as an RFC 2634 receipt")
			}
			_, err = VerifyReceipt(ack, prot.SignedData, VerifyOptions{Roots: p.roots})
			if withRequest != (err == nil) {
				t.Fatalf("VerifyReceipt = %v", err)
			}
		})
	}
}

func TestAcknowledgementFailures(t *testing.T) {
	p := getPKI(t)
	sender, recipient := p.ids["p256"], p.ids["rsa"]
	doc := []byte("delivery note 17")
	sign := func(t *testing.T, content []byte, rr bool) []byte {
		so := SignOptions{}
		if rr {
			so.ReceiptRequest = requestReceipt()
		}
		der, err := Sign(content, sender.key, sender.chain[:2], so)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	orig := sign(t, doc, true)
	otherOrig := sign(t, doc, true) // same document, different signature
	ack, err := Acknowledge(orig, doc, "note.txt", recipient.key, recipient.chain[:2], AckOptions{Verify: VerifyOptions{Roots: p.roots}})
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(ack)
	i := bytes.Index(tampered, []byte("note.txt"))
	tampered[i] ^= 0x20
	tests := []struct {
		name      string
		ack, orig []byte
		doc       []byte
		opts      VerifyOptions
		want      error
	}{
		{"other document", ack, orig, []byte("delivery note 18"), VerifyOptions{Roots: p.roots}, ErrAcknowledgement},
		{"truncated document", ack, orig, doc[:5], VerifyOptions{Roots: p.roots}, ErrAcknowledgement},
		{"other original signature", ack, otherOrig, doc, VerifyOptions{Roots: p.roots}, ErrReceipt},
		{"tampered file name", tampered, orig, doc, VerifyOptions{Roots: p.roots}, ErrBadSignature},
		{"untrusted acknowledger", ack, orig, doc, VerifyOptions{Roots: x509.NewCertPool()}, ErrUntrusted},
		{"not an acknowledgement", orig, orig, doc, VerifyOptions{Roots: p.roots}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := VerifyAcknowledgement(tt.ack, tt.orig, tt.doc, tt.opts); !errors.Is(err, tt.want) {
				t.Fatalf("VerifyAcknowledgement error = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("receipt without request", func(t *testing.T) {
		_, err := SignReceipt(sign(t, doc, false), VerifyOptions{Roots: p.roots}, recipient.key, recipient.chain[:2], SignOptions{})
		if !errors.Is(err, ErrNoReceiptRequest) {
			t.Fatalf("SignReceipt error = %v", err)
		}
	})
	t.Run("acknowledging a forged original", func(t *testing.T) {
		forged := bytes.Clone(orig)
		forged[bytes.Index(forged, doc)] ^= 1
		_, err := Acknowledge(forged, doc, "note.txt", recipient.key, recipient.chain[:2], AckOptions{Verify: VerifyOptions{Roots: p.roots}})
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("Acknowledge error = %v", err)
		}
	})
}
