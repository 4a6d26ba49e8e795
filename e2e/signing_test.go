package e2e

import (
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"google.golang.org/protobuf/encoding/protojson"
)

// waitAudit waits for an audit record matching pred; events that
// compartments report reach the log a little after the answer.
func waitAudit(t *testing.T, a *appliance, what string, pred func(auditlog.Record) bool) auditlog.Record {
	t.Helper()
	for range 300 {
		recs, err := auditlog.Read(a.auditLog())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if pred(r) {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no audit record: %s", what)
	return auditlog.Record{}
}

// asPurchasing makes a call on purchasing's gate socket under purchasing's
// uid: the position of a purchasing compartment taken over by an attacker.
func asPurchasing(t *testing.T, a *appliance, script, ctype string, body []byte) childOut {
	t.Helper()
	c := &callpb.Call{Script: script, Method: "POST", Body: body, ReqId: "attack-" + strings.ReplaceAll(script, "/", "-"),
		Meta: map[string]string{"CONTENT_TYPE": ctype}}
	in, err := protojson.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	out := runChild(t, uidPurchasing, in, "callas", filepath.Join(a.runDir(), "gate", "purchasing", "gate.sock"))
	if out.Err != "" {
		t.Fatalf("%s: %s", script, out.Err)
	}
	return out
}

// The key handler is no signing oracle (issue 13 item 5): from
// purchasing's own position — its uid, its gate socket, the only caller
// the key handler's signing scripts admit — nothing but a document of a
// registered purpose, checked against it, gets the merchant's signature.
// Each attempt is refused, audited (the gate's record with the key
// handler's reason, and the key handler's event naming the purpose), and
// carries no SignedData. The same position still gets a genuine offer
// signed, so the refusals are the checks, not a broken path.
func TestKeyHandlerIsNoSigningOracle(t *testing.T) {
	a := startAppliance(t, "runtime: runc\nconfinement: required\n")
	merchant := a.merchantCert(t)
	now := time.Now().UTC()
	offer := func(f func(o *api.Offer)) []byte {
		o := api.Offer{Type: api.TypeOffer, OfferID: strings.Repeat("5e", 16), Merchant: merchant.Subject.CommonName,
			Issued: now.Format(time.RFC3339), ValidUntil: now.Add(24 * time.Hour).Format(time.RFC3339), Terms: "net 30",
			Priced: api.Priced{Currency: "EUR", Lines: []api.Line{{SKU: "LIC-STD", Name: "Standard licence", Qty: 1, UnitCents: 19900, NetCents: 19900, VATPercent: 19, Category: "software"}},
				VAT: []api.VATGroup{{Percent: 19, NetCents: 19900, VATCents: 3781}}, NetCents: 19900, GrossCents: 23681}}
		if f != nil {
			f(&o)
		}
		b, _ := json.Marshal(o)
		return b
	}
	statement, _ := json.Marshal(api.Statement{Type: api.TypeStatement, Org: "acme", OrgName: "ACME", Issued: now.Format(time.RFC3339),
		Currency: "EUR", Orders: []api.StatementLine{}, VAT: []api.VATGroup{}})

	t.Run("a genuine offer is signed", func(t *testing.T) {
		out := asPurchasing(t, a, "keyhandler/sign-offer", "application/json", offer(nil))
		if out.Status != 200 {
			t.Fatalf("sign-offer = %d %s", out.Status, out.Body)
		}
		if _, err := cms.Verify(out.Body, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}}); err != nil {
			t.Fatalf("the offer's signature does not verify: %v", err)
		}
	})

	noSignature := func(t *testing.T, out childOut) {
		t.Helper()
		if _, err := cms.Verify(out.Body, cms.VerifyOptions{SkipTrust: true}); err == nil {
			t.Fatalf("a refusal carries SignedData: %d", out.Status)
		}
	}

	t.Run("the former sign script is gone", func(t *testing.T) {
		for _, body := range [][]byte{[]byte(`{}`), []byte("pay me 1000 EUR")} {
			out := asPurchasing(t, a, "keyhandler/sign", "application/json", body)
			if out.Status != 404 || out.Headers["X-E2S-Reason"] != "reg.unknown_script" {
				t.Fatalf("keyhandler/sign %q = %d %v %s", body, out.Status, out.Headers, out.Body)
			}
			noSignature(t, out)
		}
		a.audited(func(r auditlog.Record) bool {
			return r.Caller == "purchasing" && r.Script == "keyhandler/sign" && r.Decision == "deny" && r.Reason == "reg.unknown_script"
		})
	})

	t.Run("bytes that are no JSON are stopped at the gate", func(t *testing.T) {
		out := asPurchasing(t, a, "keyhandler/sign-offer", "application/json", []byte("pay me 1000 EUR"))
		if out.Status != 400 || out.Headers["X-E2S-Reason"] != "flt.json" {
			t.Fatalf("sign-offer of bytes = %d %v %s", out.Status, out.Headers, out.Body)
		}
		noSignature(t, out)
		out = asPurchasing(t, a, "keyhandler/sign-offer", "application/octet-stream", []byte("pay me 1000 EUR"))
		if out.Status != 415 || out.Headers["X-E2S-Reason"] != "flt.content_type" {
			t.Fatalf("sign-offer of octets = %d %v %s", out.Status, out.Headers, out.Body)
		}
		noSignature(t, out)
		a.audited(func(r auditlog.Record) bool {
			return r.Caller == "purchasing" && r.Script == "keyhandler/sign-offer" && r.Decision == "deny" && r.Reason == "flt.json"
		})
	})

	for _, tt := range []struct {
		name, script, purpose, reason string
		body                          []byte
	}{
		{"an empty document", "keyhandler/sign-offer", "offer", "keyhandler.wrong_purpose", []byte(`{}`)},
		{"arbitrary JSON", "keyhandler/sign-statement", "statement", "keyhandler.not_a_document", []byte(`"pay me 1000 EUR"`)},
		{"a statement as an offer", "keyhandler/sign-offer", "offer", "keyhandler.wrong_purpose", statement},
		{"an offer as a statement", "keyhandler/sign-statement", "statement", "keyhandler.wrong_purpose", offer(nil)},
		{"an offer as a login answer", "keyhandler/sign-session", "session", "keyhandler.wrong_purpose", offer(nil)},
		{"an offer for another merchant", "keyhandler/sign-offer", "offer", "keyhandler.wrong_merchant", offer(func(o *api.Offer) { o.Merchant = "another merchant" })},
		{"an offer whose total is inflated", "keyhandler/sign-offer", "offer", "keyhandler.amounts", offer(func(o *api.Offer) { o.GrossCents = 2368100 })},
		{"an offer as a contract", "keyhandler/countersign", "contract", "keyhandler.not_an_acceptance", offer(nil)},
	} {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			ctype := "application/json"
			if tt.script == "keyhandler/countersign" {
				ctype = "application/pkcs7-mime"
			}
			out := asPurchasing(t, a, tt.script, ctype, tt.body)
			if out.Status != 422 {
				t.Fatalf("%s = %d %s", tt.script, out.Status, out.Body)
			}
			noSignature(t, out)
			var e api.Error
			if json.Unmarshal(out.Body, &e) != nil || e.Error != tt.reason {
				t.Fatalf("%s answered %s, want error %s", tt.script, out.Body, tt.reason)
			}
			reqID := "attack-" + strings.ReplaceAll(tt.script, "/", "-")
			gate := a.audited(func(r auditlog.Record) bool {
				return r.Caller == "purchasing" && r.Script == tt.script && r.CallerReqID == reqID && r.Status == 422 && r.TargetReason == tt.reason
			})
			waitAudit(t, a, "the key handler's refusal event", func(r auditlog.Record) bool {
				return r.Event == "compartment" && r.Caller == "keyhandler" && r.Script == "keyhandler/sign" && r.Decision == "deny" &&
					r.Reason == tt.reason && strings.Contains(r.Detail, "purpose "+tt.purpose+", caller purchasing") && strings.Contains(r.Detail, "req_id "+gate.ReqID+":")
			})
		})
	}
}
