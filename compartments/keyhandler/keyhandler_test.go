package keyhandler

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/e2sgate/e2sgate/compartments/keyhandler/compartment"
	"github.com/e2sgate/e2sgate/compartments/manifest"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/policies"
	"gopkg.in/yaml.v3"
)

func newBuyer(t *testing.T, ca bool) (*ecdsa.PrivateKey, *x509.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "buyer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		BasicConstraintsValid: true, IsCA: ca}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

type rig struct {
	t      *testing.T
	h      *Handler
	events []Event
}

func newRig(t *testing.T) *rig {
	h, err := Open(slog.New(slog.NewTextHandler(io.Discard, nil)), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, h: h}
	h.Audit = func(e Event) { r.events = append(r.events, e) }
	return r
}

func (r *rig) call(script string, body []byte) *callpb.Response {
	resp, err := r.h.Handle(context.Background(), &callpb.Call{Script: script, Method: "POST", Body: body, Caller: "purchasing", ReqId: "r1"})
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

// refused asserts a 422 with reason, no signature in the body, and an
// audit event naming purpose and reason.
func (r *rig) refused(name, script string, body []byte, purpose, reason string) {
	r.t.Helper()
	n := len(r.events)
	resp := r.call(script, body)
	if resp.GetStatus() != 422 || resp.GetReason() != reason {
		r.t.Errorf("%s: %s = %d %s %s, want 422 %s", name, script, resp.GetStatus(), resp.GetReason(), resp.GetBody(), reason)
		return
	}
	if _, err := cms.Verify(resp.GetBody(), cms.VerifyOptions{SkipTrust: true}); err == nil {
		r.t.Errorf("%s: a refusal carries SignedData", name)
	}
	if len(r.events) != n+1 {
		r.t.Errorf("%s: %d audit events, want 1", name, len(r.events)-n)
		return
	}
	e := r.events[n]
	if e.Kind != "sign" || e.Decision != "deny" || e.Reason != reason || !strings.Contains(e.Detail, "purpose "+purpose+",") || !strings.Contains(e.Detail, "caller purchasing") {
		r.t.Errorf("%s: audit event %+v", name, e)
	}
}

func offerDoc(now time.Time, buyer string) api.Offer {
	o := api.Offer{Type: api.TypeOffer, OfferID: strings.Repeat("ab", 16), Merchant: "e2sgate merchant",
		Issued: now.UTC().Format(time.RFC3339), ValidUntil: now.Add(7 * 24 * time.Hour).UTC().Format(time.RFC3339), Terms: "net 30",
		Priced: api.Priced{Currency: "EUR",
			Lines: []api.Line{{SKU: "LIC-STD", Name: "Licence", Qty: 2, UnitCents: 19900, NetCents: 39800, VATPercent: 19, Category: "software"},
				{SKU: "DOC-SPEC", Name: "Spec", Qty: 1, UnitCents: 4900, NetCents: 4900, VATPercent: 7, Category: "documents"}},
			VAT:      []api.VATGroup{{Percent: 7, NetCents: 4900, VATCents: 343}, {Percent: 19, NetCents: 39800, VATCents: 7562}},
			NetCents: 44700, GrossCents: 44700 + 7562 + 343}}
	if buyer != "" {
		o.Org, o.Buyer, o.BuyerName = "acme", buyer, "Bob"
	}
	return o
}

func js(v any) []byte { b, _ := json.Marshal(v); return b }

// The offer purpose signs an offer in this merchant's name whose amounts
// add up; purchasing's position can get nothing else signed under it.
func TestSignOffer(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	good := offerDoc(now, "")
	resp := r.call("sign-offer", js(good))
	if resp.GetStatus() != 200 {
		t.Fatalf("sign-offer = %d %s", resp.GetStatus(), resp.GetBody())
	}
	s, err := cms.Verify(resp.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{r.h.cert}})
	if err != nil || !bytes.Equal(s.Content, js(good)) {
		t.Fatalf("offer signature: %v", err)
	}
	if len(r.events) != 0 {
		t.Fatalf("an allowed signature made audit events %+v", r.events)
	}

	mutate := func(f func(o *api.Offer)) []byte { o := offerDoc(now, strings.Repeat("0f", 32)); f(&o); return js(o) }
	stmt := js(api.Statement{Type: api.TypeStatement, Org: "acme", Issued: now.UTC().Format(time.RFC3339), Currency: "EUR"})
	for _, tt := range []struct {
		name   string
		body   []byte
		reason string
	}{
		{"empty object", []byte(`{}`), ReasonWrongPurpose},
		{"arbitrary bytes", []byte("pay me 1000 EUR"), ReasonNotJSON},
		{"a statement", stmt, ReasonWrongPurpose},
		{"another merchant", mutate(func(o *api.Offer) { o.Merchant = "evil merchant" }), ReasonMerchant},
		{"unknown field", bytes.Replace(js(good), []byte(`"terms"`), []byte(`"iban":"X","terms"`), 1), ReasonMalformed},
		{"data after it", append(js(good), []byte(`{"more":1}`)...), ReasonNotJSON},
		{"net not unit × qty", mutate(func(o *api.Offer) { o.Lines[0].NetCents = 1 }), ReasonAmounts},
		{"negative unit", mutate(func(o *api.Offer) { o.Lines[0].UnitCents, o.Lines[0].NetCents = -1, -2 }), ReasonAmounts},
		{"gross off", mutate(func(o *api.Offer) { o.GrossCents-- }), ReasonAmounts},
		{"VAT rounded wrong", mutate(func(o *api.Offer) { o.VAT[0].VATCents++; o.GrossCents++ }), ReasonAmounts},
		{"VAT group missing", mutate(func(o *api.Offer) { o.VAT = o.VAT[1:]; o.GrossCents -= 343 }), ReasonAmounts},
		{"no lines", mutate(func(o *api.Offer) { o.Lines, o.VAT, o.NetCents, o.GrossCents = nil, nil, 0, 0 }), ReasonAmounts},
		{"backdated", mutate(func(o *api.Offer) { o.Issued = now.Add(-time.Hour).UTC().Format(time.RFC3339) }), ReasonTime},
		{"valid for a year", mutate(func(o *api.Offer) { o.ValidUntil = now.AddDate(1, 0, 0).UTC().Format(time.RFC3339) }), ReasonTime},
		{"bad offer id", mutate(func(o *api.Offer) { o.OfferID = "../x" }), ReasonMalformed},
		{"buyer without org", mutate(func(o *api.Offer) { o.Org = "" }), ReasonMalformed},
		{"bad currency", mutate(func(o *api.Offer) { o.Currency = "euro" }), ReasonMalformed},
	} {
		r.refused(tt.name, "sign-offer", tt.body, "offer", tt.reason)
	}
	// The former script that signed anything is gone.
	if resp := r.call("sign", []byte(`{}`)); resp.GetStatus() != 404 || len(resp.GetBody()) > 100 {
		t.Fatalf("sign = %d %s", resp.GetStatus(), resp.GetBody())
	}
}

func TestSignSessionAndStatement(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	session := api.LoginAnswer{Type: api.TypeSession, Session: strings.Repeat("c", 64), Expires: now.Add(time.Hour).UTC().Format(time.RFC3339),
		Buyer:     api.MemberView{Org: "acme", Fingerprint: strings.Repeat("0f", 32), Name: "Bob", Role: "buyer"},
		Catalogue: "/cgi-bin/purchasing/private"}
	if resp := r.call("sign-session", js(session)); resp.GetStatus() != 200 {
		t.Fatalf("sign-session = %d %s", resp.GetStatus(), resp.GetBody())
	}
	st := api.Statement{Type: api.TypeStatement, Org: "acme", OrgName: "ACME", Issued: now.UTC().Format(time.RFC3339), Currency: "EUR",
		Orders: []api.StatementLine{
			{OrderID: strings.Repeat("1", 32), Buyer: strings.Repeat("0f", 32), NetCents: 100, VAT: []api.VATGroup{{Percent: 19, NetCents: 100, VATCents: 19}}, GrossCents: 119, AuthorizedCents: 119, CapturedCents: 119},
			{OrderID: strings.Repeat("2", 32), Buyer: strings.Repeat("0f", 32), NetCents: 200, VAT: []api.VATGroup{{Percent: 19, NetCents: 200, VATCents: 38}}, GrossCents: 238, AuthorizedCents: 238},
		},
		VAT: []api.VATGroup{{Percent: 19, NetCents: 300, VATCents: 57}}, NetCents: 300, GrossCents: 357, AuthorizedCents: 357, CapturedCents: 119}
	if resp := r.call("sign-statement", js(st)); resp.GetStatus() != 200 {
		t.Fatalf("sign-statement = %d %s", resp.GetStatus(), resp.GetBody())
	}
	emptySt := api.Statement{Type: api.TypeStatement, Org: "acme", OrgName: "ACME", Issued: now.UTC().Format(time.RFC3339), Currency: "EUR",
		Orders: []api.StatementLine{}, VAT: []api.VATGroup{}}
	if resp := r.call("sign-statement", js(emptySt)); resp.GetStatus() != 200 {
		t.Fatalf("sign-statement of no orders = %d %s", resp.GetStatus(), resp.GetBody())
	}

	s2 := session
	s2.MerchantSignature = []byte("x")
	s3 := session
	s3.Expires = now.Add(48 * time.Hour).UTC().Format(time.RFC3339)
	s4 := session
	s4.Buyer.Revoked = true
	st2 := st
	st2.CapturedCents = 357
	st3 := st
	st3.Orders = []api.StatementLine{st.Orders[0], st.Orders[0]}
	st4 := st
	st4.VAT = []api.VATGroup{{Percent: 19, NetCents: 300, VATCents: 58}}
	for _, tt := range []struct {
		name, script, purpose string
		body                  []byte
		reason                string
	}{
		{"offer as a session", "sign-session", "session", js(offerDoc(now, "")), ReasonWrongPurpose},
		{"session with a signature inside", "sign-session", "session", js(s2), ReasonMalformed},
		{"session for two days", "sign-session", "session", js(s3), ReasonTime},
		{"session of a revoked member", "sign-session", "session", js(s4), ReasonBuyer},
		{"empty object", "sign-statement", "statement", []byte(`{}`), ReasonWrongPurpose},
		{"offer as a statement", "sign-statement", "statement", js(offerDoc(now, "")), ReasonWrongPurpose},
		{"captured more than the orders", "sign-statement", "statement", js(st2), ReasonAmounts},
		{"order twice", "sign-statement", "statement", js(st3), ReasonMalformed},
		{"VAT total off", "sign-statement", "statement", js(st4), ReasonAmounts},
	} {
		r.refused(tt.name, tt.script, tt.body, tt.purpose, tt.reason)
	}
}

func TestCountersignAndProtect(t *testing.T) {
	r := newRig(t)
	now := time.Now()
	bk, bc := newBuyer(t, false)
	offerFor := func(o api.Offer) []byte {
		resp := r.call("sign-offer", js(o))
		if resp.GetStatus() != 200 {
			t.Fatalf("sign-offer = %d %s", resp.GetStatus(), resp.GetBody())
		}
		return resp.GetBody()
	}
	accept := func(offer []byte, k crypto.Signer, c *x509.Certificate) []byte {
		a, err := cms.AddSigner(offer, nil, k, []*x509.Certificate{c}, cms.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	offer := offerFor(offerDoc(now, fingerprint(bc)))
	ek, ec := newBuyer(t, false)
	quotation := offerFor(offerDoc(now, ""))
	byBuyer, _ := cms.Sign(js(offerDoc(now, fingerprint(bc))), bk, []*x509.Certificate{bc}, cms.SignOptions{})
	// A signed document of another purpose, accepted: still no contract.
	st := js(api.Statement{Type: api.TypeStatement, Org: "acme", OrgName: "A", Issued: now.UTC().Format(time.RFC3339), Currency: "EUR", Orders: []api.StatementLine{}, VAT: []api.VATGroup{}})
	stmt := r.call("sign-statement", st).GetBody()
	for _, tt := range []struct {
		name   string
		body   []byte
		reason string
	}{
		{"offer alone", offer, ReasonAcceptance},
		{"buyer's own document", accept(byBuyer, bk, bc), ReasonAcceptance},
		{"merchant twice", accept(offer, r.h.key, r.h.cert), ReasonAcceptance},
		{"garbage", []byte("x"), ReasonAcceptance},
		{"accepted by another key than the offer's buyer", accept(offer, ek, ec), ReasonBuyer},
		{"a quotation accepted", accept(quotation, bk, bc), ReasonBuyer},
		{"a statement accepted", accept(stmt, bk, bc), ReasonWrongPurpose},
	} {
		r.refused(tt.name, "countersign", tt.body, "contract", tt.reason)
	}
	// An offer that expired since (the key handler's clock moves on).
	r.h.now = func() time.Time { return now.Add(8 * 24 * time.Hour) }
	r.refused("expired offer", "countersign", accept(offer, bk, bc), "contract", ReasonTime)
	r.h.now = time.Now

	resp := r.call("countersign", accept(offer, bk, bc))
	if resp.GetStatus() != 200 {
		t.Fatalf("countersign = %d %s", resp.GetStatus(), resp.GetBody())
	}
	s, err := cms.Verify(resp.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{r.h.cert, bc}})
	if err != nil || len(s.Signers) != 3 || !s.Signers[2].Certificate.Equal(r.h.cert) ||
		len(s.Signers[1].CounterSignatures) != 1 || !s.Signers[1].CounterSignatures[0].Certificate.Equal(r.h.cert) {
		t.Fatalf("contract: %v %+v", err, s)
	}

	pemOf := func(c *x509.Certificate) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	delivery := []byte("e2sgate delivery\norder: " + strings.Repeat("ab", 16) + "\nlicensee: acme (Bob)\ncontract: SHA-256 " + strings.Repeat("0f", 32) + "\n\nLIC-STD  Licence  x2\n")
	req := js(ProtectRequest{Content: delivery, Recipient: pemOf(bc)})
	resp = r.call("protect", req)
	var p ProtectResponse
	if resp.GetStatus() != 200 || json.Unmarshal(resp.GetBody(), &p) != nil {
		t.Fatalf("protect = %d %s", resp.GetStatus(), resp.GetBody())
	}
	o, err := cms.Open(p.Message, bc, bk, cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{r.h.cert}}})
	if err != nil || !bytes.Equal(o.Content, delivery) || !o.Compressed || !bytes.Equal(o.SignedData, p.SignedData) {
		t.Fatalf("open: %v", err)
	}
	_, caCert := newBuyer(t, true)
	for _, tt := range []struct {
		name   string
		body   []byte
		reason string
	}{
		{"no certificate", []byte(`{"content":"eA==","recipient":"nope"}`), ReasonRecipient},
		{"arbitrary bytes", js(ProtectRequest{Content: []byte("pay me"), Recipient: pemOf(bc)}), ReasonWrongPurpose},
		{"an offer", js(ProtectRequest{Content: js(offerDoc(now, "")), Recipient: pemOf(bc)}), ReasonWrongPurpose},
		{"for the merchant itself", js(ProtectRequest{Content: delivery, Recipient: pemOf(r.h.cert)}), ReasonRecipient},
		{"for a CA", js(ProtectRequest{Content: delivery, Recipient: pemOf(caCert)}), ReasonRecipient},
		{"unknown field", []byte(`{"content":"eA==","recipient":"","sign_only":true}`), ReasonMalformed},
	} {
		r.refused(tt.name, "protect", tt.body, "delivery", tt.reason)
	}
}

// Every purpose is registered in the embedded call registry, for
// purchasing only, and every key handler script there is a purpose or the
// certificate; the manifest declares exactly the refusal reasons, each
// explained in reasons.yaml.
func TestPurposesRegistered(t *testing.T) {
	b, err := policies.Default.ReadFile("registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		Scripts map[string]struct {
			Target, Handler string
			Callers         []string
		}
	}
	if err := yaml.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	handlers := map[string]bool{}
	for name, s := range reg.Scripts {
		if s.Target != "keyhandler" {
			continue
		}
		handlers[s.Handler] = true
		if s.Handler == "certificate" {
			continue
		}
		if !slices.ContainsFunc(Purposes, func(p Purpose) bool { return p.Handler == s.Handler }) {
			t.Errorf("%s: handler %s is no signing purpose", name, s.Handler)
		}
		if !slices.Equal(s.Callers, []string{"purchasing"}) {
			t.Errorf("%s: callers %v, want [purchasing]", name, s.Callers)
		}
	}
	for _, p := range Purposes {
		if !handlers[p.Handler] {
			t.Errorf("purpose %s (%s) is not registered", p.Name, p.Handler)
		}
	}
	m := manifest.Lookup("keyhandler")
	for _, reason := range Reasons {
		if !m.AllowsEvent("sign", reason) {
			t.Errorf("manifest does not declare the sign event's reason %s", reason)
		}
	}
	if len(m.Events) != 1 || len(m.Events[0].Reasons) != len(Reasons) {
		t.Errorf("manifest events %+v, want the sign event with %d reasons", m.Events, len(Reasons))
	}
	rb, _ := policies.Default.ReadFile("reasons.yaml")
	for _, reason := range Reasons {
		if !bytes.Contains(rb, []byte("\n"+reason+": ")) {
			t.Errorf("reasons.yaml does not explain %s", reason)
		}
	}
}

// A rotation (the supervisor's request file, then a restart) makes a new
// key: new documents carry the new certificate, what the old key signed
// still verifies with the old one, and an offer the old key made is still
// countersigned — by the new key.
func TestRotate(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := Open(log, dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, h: h}
	now := time.Now()
	bk, bc := newBuyer(t, false)
	oldOffer := r.call("sign-offer", js(offerDoc(now, fingerprint(bc)))).GetBody()
	oldCert := h.cert
	oldKey, _ := os.ReadFile(filepath.Join(dir, KeyFile))

	// Without a request, a restart keeps the key.
	if h2, err := Open(log, dir); err != nil || !h2.cert.Equal(oldCert) {
		t.Fatalf("restart changed the key: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, RotateRequest), []byte("proposal 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err = Open(log, dir)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	if h.cert.Equal(oldCert) || len(h.previous) != 1 || !h.previous[0].Equal(oldCert) {
		t.Fatalf("after rotation: same certificate or previous %d", len(h.previous))
	}
	if newKey, _ := os.ReadFile(filepath.Join(dir, KeyFile)); bytes.Equal(newKey, oldKey) {
		t.Fatal("the old key is still the key")
	}
	if _, err := os.Stat(filepath.Join(dir, RotateRequest)); !os.IsNotExist(err) {
		t.Fatalf("request left: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, PreviousDir, oldCert.SerialNumber.Text(16)+".pem")); !bytes.Contains(b, []byte("CERTIFICATE")) {
		t.Fatal("old certificate not kept")
	}
	// The old offer verifies with the old certificate only.
	if _, err := cms.Verify(oldOffer, cms.VerifyOptions{Registered: []*x509.Certificate{oldCert}}); err != nil {
		t.Fatalf("old offer with the old certificate: %v", err)
	}
	if _, err := cms.Verify(oldOffer, cms.VerifyOptions{Registered: []*x509.Certificate{h.cert}}); err == nil {
		t.Fatal("old offer verified with the new certificate")
	}
	// Its acceptance is countersigned by the new key.
	acc, _ := cms.AddSigner(oldOffer, nil, bk, []*x509.Certificate{bc}, cms.SignOptions{})
	resp := r.call("countersign", acc)
	if resp.GetStatus() != 200 {
		t.Fatalf("countersign of an old offer = %d %s", resp.GetStatus(), resp.GetBody())
	}
	s, err := cms.Verify(resp.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{oldCert, h.cert, bc}})
	if err != nil || !s.Signers[0].Certificate.Equal(oldCert) || !s.Signers[2].Certificate.Equal(h.cert) {
		t.Fatalf("contract after rotation: %v", err)
	}
	// New offers use the new key.
	newOffer := r.call("sign-offer", js(offerDoc(now, ""))).GetBody()
	if _, err := cms.Verify(newOffer, cms.VerifyOptions{Registered: []*x509.Certificate{h.cert}}); err != nil {
		t.Fatalf("new offer: %v", err)
	}
	if _, err := cms.Verify(newOffer, cms.VerifyOptions{Registered: []*x509.Certificate{oldCert}}); err == nil {
		t.Fatal("new offer verified with the old certificate")
	}
	// A key that does not match its certificate is refused at start.
	os.WriteFile(filepath.Join(dir, KeyFile), oldKey, 0o600)
	if _, err := Open(log, dir); err == nil || !strings.Contains(err.Error(), "is not the certificate of") {
		t.Fatalf("mismatched key and certificate: %v", err)
	}
}
