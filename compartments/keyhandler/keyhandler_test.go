package keyhandler

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

func newBuyer(t *testing.T) (*ecdsa.PrivateKey, *x509.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "buyer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func TestCountersignAndProtect(t *testing.T) {
	h, err := Open(slog.New(slog.NewTextHandler(io.Discard, nil)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	call := func(script string, body []byte) *callpb.Response {
		r, _ := h.Handle(context.Background(), &callpb.Call{Script: script, Method: "POST", Body: body, Caller: "purchasing"})
		return r
	}
	offer := call("sign", []byte(`{"offer":1}`)).GetBody()
	bk, bc := newBuyer(t)
	acc, _ := cms.AddSigner(offer, nil, bk, []*x509.Certificate{bc}, cms.SignOptions{})
	byBuyer, _ := cms.Sign([]byte(`{"offer":1}`), bk, []*x509.Certificate{bc}, cms.SignOptions{})
	buyerTwice, _ := cms.AddSigner(byBuyer, nil, bk, []*x509.Certificate{bc}, cms.SignOptions{})
	merchantTwice, _ := cms.AddSigner(offer, nil, h.key, []*x509.Certificate{h.cert}, cms.SignOptions{})
	for name, body := range map[string][]byte{
		"offer alone": offer, "buyer's own document": buyerTwice, "merchant twice": merchantTwice, "garbage": []byte("x"),
	} {
		if r := call("countersign", body); r.GetStatus() != 400 {
			t.Errorf("countersign %s = %d", name, r.GetStatus())
		}
	}
	r := call("countersign", acc)
	if r.GetStatus() != 200 {
		t.Fatalf("countersign = %d %s", r.GetStatus(), r.GetBody())
	}
	s, err := cms.Verify(r.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{h.cert, bc}})
	if err != nil || len(s.Signers) != 3 || !s.Signers[2].Certificate.Equal(h.cert) ||
		len(s.Signers[1].CounterSignatures) != 1 || !s.Signers[1].CounterSignatures[0].Certificate.Equal(h.cert) {
		t.Fatalf("contract: %v %+v", err, s)
	}

	req, _ := json.Marshal(ProtectRequest{Content: []byte("licence"), Recipient: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: bc.Raw}))})
	r = call("protect", req)
	var p ProtectResponse
	if r.GetStatus() != 200 || json.Unmarshal(r.GetBody(), &p) != nil {
		t.Fatalf("protect = %d %s", r.GetStatus(), r.GetBody())
	}
	o, err := cms.Open(p.Message, bc, bk, cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{h.cert}}})
	if err != nil || string(o.Content) != "licence" || !o.Compressed || string(o.SignedData) != string(p.SignedData) {
		t.Fatalf("open: %v", err)
	}
	if r := call("protect", []byte(`{"content":"eA==","recipient":"nope"}`)); r.GetStatus() != 400 {
		t.Fatalf("protect for no certificate = %d", r.GetStatus())
	}
}
