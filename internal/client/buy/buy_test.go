package buy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// merchant plays the purchasing compartment behind the web front: it
// requires a TLS client certificate, checks every request's signature
// against the buyer's certificate (a nonce once), and signs, countersigns and protects as
// the key handler would. Its hooks let a test alter an answer.
type merchant struct {
	t     *testing.T
	cred  *keystore.Credential
	buyer *x509.Certificate
	fp    string

	mu        sync.Mutex
	requests  []string // "METHOD script"
	nonces    map[string]bool
	accepts   int
	deliveryN int
	protected *cms.Protected
	ack       []byte

	// Hooks, nil for the honest merchant.
	offerDoc    func(*api.Offer)          // alter the offer before signing
	offerSigner *keystore.Credential      // sign the offer with another key
	acceptFail  func(n int) (int, string) // status and code for the n-th accept (0: answer)
	noCounter   bool                      // contract without the countersignature
	notYet      int                       // answer not_delivered this many times
	refuseAll   string                    // refuse every request 401 with this code
}

const document = "the licence key for order "

func (m *merchant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	script := strings.TrimPrefix(r.URL.Path, "/cgi-bin/purchasing/")
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, r.Method+" "+script)
	if len(r.TLS.PeerCertificates) == 0 || !r.TLS.PeerCertificates[0].Equal(m.buyer) {
		m.fail(w, 401, "unauthenticated")
		return
	}
	body, _ := io.ReadAll(r.Body)
	// Every request, GET too, is signed over exactly what was sent, with a
	// new nonce each time.
	if r.Header.Get(api.HeaderBuyer) != m.fp {
		m.t.Errorf("%s: E2s-Buyer %q", script, r.Header.Get(api.HeaderBuyer))
	}
	nonce := r.Header.Get(api.HeaderNonce)
	msg := api.RequestToSign(r.Method, r.URL.Path, r.URL.RawQuery, body, r.Header.Get(api.HeaderTime), nonce, m.fp)
	if _, err := cms.VerifyHeader(r.Header.Get(api.HeaderSignature), msg, m.buyer, cms.HeaderVerifyOptions{}); err != nil || nonce == "" || m.nonces[nonce] {
		m.t.Errorf("%s: request signature: %v (nonce %q)", script, err, nonce)
		m.fail(w, 401, "bad_signature")
		return
	}
	if m.nonces == nil {
		m.nonces = map[string]bool{}
	}
	m.nonces[nonce] = true
	if m.refuseAll != "" {
		m.fail(w, 401, m.refuseAll)
		return
	}
	id, _ := strings.CutPrefix(script, "delivery/")
	switch {
	case script == "private":
		m.json(w, 200, api.PrivateCatalogue{
			Org: api.OrgRef{ID: "acme", Name: "ACME Ltd"}, Currency: "EUR", Terms: "30 days",
			Buyer: api.MemberView{Org: "acme", Name: "bob", LimitCents: 100000, Categories: []string{"software"}},
			Products: []api.PrivateProduct{
				{Product: api.Product{SKU: "LIC-STD", Name: "Standard licence", Category: "software", PriceCents: 15900, VATPercent: 19}, ListCents: 19900, Allowed: true},
				{Product: api.Product{SKU: "SUP-1Y", Name: "Support", Category: "services", PriceCents: 12000, VATPercent: 19}, ListCents: 12000},
			}})
	case script == "offer":
		var bk api.Basket
		if err := json.Unmarshal(body, &bk); err != nil {
			m.t.Errorf("basket %s: %v", body, err)
		}
		doc := api.Offer{Type: api.TypeOffer, OfferID: strings.Repeat("ab", 16), Merchant: "e2sgate merchant", Issued: time.Now().UTC().Format(time.RFC3339),
			ValidUntil: time.Now().Add(time.Hour).UTC().Format(time.RFC3339), Terms: "30 days", Org: "acme", Buyer: m.fp}
		doc.Currency = "EUR"
		for _, it := range bk.Items {
			net := 15900 * int64(it.Qty)
			doc.Lines = append(doc.Lines, api.Line{SKU: it.SKU, Name: it.SKU, Qty: it.Qty, UnitCents: 15900, NetCents: net, VATPercent: 19})
			doc.NetCents += net
		}
		doc.VAT = []api.VATGroup{{Percent: 19, NetCents: doc.NetCents, VATCents: doc.NetCents * 19 / 100}}
		doc.GrossCents = doc.NetCents + doc.VAT[0].VATCents
		if m.offerDoc != nil {
			m.offerDoc(&doc)
		}
		content, _ := json.Marshal(doc)
		signer := m.cred
		if m.offerSigner != nil {
			signer = m.offerSigner
		}
		der, err := cms.Sign(content, signer.Signer, signer.Chain, cms.SignOptions{})
		if err != nil {
			m.t.Fatal(err)
		}
		w.Write(der)
	case script == "accept":
		m.accepts++
		if m.acceptFail != nil {
			if status, code := m.acceptFail(m.accepts); status != 0 {
				m.fail(w, status, code)
				return
			}
		}
		var req api.AcceptRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Card.PAN != "4111111111111111" || req.Card.Expiry != "12/30" {
			m.t.Errorf("accept request %s: %v", body, err)
		}
		s, err := cms.Verify(req.Acceptance, cms.VerifyOptions{Registered: []*x509.Certificate{m.cred.Certificate(), m.buyer}})
		if err != nil || len(s.Signers) != 2 || !s.Signers[1].Certificate.Equal(m.buyer) {
			m.t.Errorf("acceptance: %v", err)
			m.fail(w, 400, "bad_acceptance")
			return
		}
		contract := req.Acceptance
		if !m.noCounter {
			contract, err = cms.CounterSign(contract, 1, m.cred.Signer, m.cred.Chain, cms.SignOptions{})
			if err != nil {
				m.t.Fatal(err)
			}
		}
		contract, err = cms.AddSigner(contract, nil, m.cred.Signer, m.cred.Chain, cms.SignOptions{})
		if err != nil {
			m.t.Fatal(err)
		}
		status := 201
		if m.accepts > 1 && m.acceptFail == nil {
			status = 200
		}
		w.WriteHeader(status)
		w.Write(contract)
	case id != script:
		if m.deliveryN++; m.deliveryN <= m.notYet {
			m.fail(w, 404, "not_delivered")
			return
		}
		if m.protected == nil {
			p, err := cms.ProtectDocument([]byte(document+id), m.cred.Signer, m.cred.Chain, []*x509.Certificate{m.buyer}, cms.ProtectOptions{})
			if err != nil {
				m.t.Fatal(err)
			}
			m.protected = p
		}
		w.Write(m.protected.Message)
	case strings.HasPrefix(script, "order/"):
		m.json(w, 200, api.Order{OrderID: strings.TrimPrefix(script, "order/"), Status: api.StatusDelivered, Delivery: &api.Delivery{FileName: "../licence.txt"}})
	case strings.HasPrefix(script, "ack/"):
		m.ack = body
		m.json(w, 200, map[string]string{"status": api.StatusAcknowledged})
	default:
		m.fail(w, 404, "no_handler")
	}
}

func (m *merchant) json(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (m *merchant) fail(w http.ResponseWriter, status int, code string) {
	m.json(w, status, api.Error{Error: code, Message: "the merchant says " + code})
}

// rig is a buyer with a keystore and certstore, and a merchant on an
// httptest TLS server whose certificate the buyer trusts by -cacert.
type rig struct {
	m      *merchant
	srv    *httptest.Server
	opts   Options
	cred   *keystore.Credential
	store  *certstore.Store
	stdout bytes.Buffer
}

func credential(t *testing.T, dir, label string) *keystore.Credential {
	t.Helper()
	ks, err := keystore.OpenFile(dir, "pw")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ks.Generate(label, keystore.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	buyer := credential(t, filepath.Join(dir, "keystore"), "bob")
	sum := sha256.Sum256(buyer.Certificate().Raw)
	m := &merchant{t: t, cred: credential(t, filepath.Join(dir, "merchant"), "merchant"), buyer: buyer.Certificate(), fp: hex.EncodeToString(sum[:])}
	srv := httptest.NewUnstartedServer(m)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // TestUntrustedAppliance's handshake
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caPEM := filepath.Join(dir, "tls.pem")
	os.WriteFile(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	store, err := certstore.Open(filepath.Join(dir, "certstore"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put("merchant", m.cred.Certificate()); err != nil {
		t.Fatal(err)
	}
	return &rig{m: m, srv: srv, cred: buyer, store: store, opts: Options{
		URL: srv.URL, CACert: caPEM, Merchant: "merchant", Card: "4111111111111111 12/30", CardEnv: "E2S_CARD",
		Retries: 3, Out: filepath.Join(dir, "out"),
	}}
}

func (r *rig) session(t *testing.T) *Session {
	t.Helper()
	s, err := New(r.opts, r.cred, r.store, &r.stdout, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	s.backoff = func(int) time.Duration { return time.Millisecond }
	s.poll = time.Millisecond
	return s
}

func mustContain(t *testing.T, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("lacks %q:\n%s", w, s)
		}
	}
}

// TestPurchase: browse, offer, acceptance, contract, then the delivery
// opened and acknowledged, against the honest merchant.
func TestPurchase(t *testing.T) {
	r := newRig(t)
	r.opts.Items = "LIC-STD=1, LIC-STD=1"
	b := r.session(t)
	id, err := b.Purchase(context.Background())
	if err != nil {
		t.Fatalf("purchase: %v\n%s", err, r.stdout.String())
	}
	if id != strings.Repeat("ab", 16) {
		t.Fatalf("order id %q", id)
	}
	mustContain(t, r.stdout.String(), "buyer bob of ACME Ltd (limit 1000.00 EUR, categories software)",
		"offer "+id+" from e2sgate merchant", "signature verified", "LIC-STD", "2 ×     159.00 EUR =     318.00 EUR",
		"gross 378.42 EUR", "contract "+id+": signed by the merchant, by you and countersigned by the merchant; all verified")
	for _, f := range []string{"offer-", "acceptance-", "contract-"} {
		fi, err := os.Stat(filepath.Join(r.opts.Out, f+id+".p7m"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, err, fi)
		}
	}
	if want := "GET private,POST offer,POST accept"; strings.Join(r.m.requests, ",") != want {
		t.Errorf("requests %v, want %s", r.m.requests, want)
	}
	mustContain(t, b.FollowUp(id), "e2s buy -url "+r.srv.URL+" -cacert "+r.opts.CACert, "-order "+id+" -wait 10m")

	// The saved acceptance again: the same contract, "accepted before".
	r.stdout.Reset()
	if _, err := b.Resume(context.Background(), filepath.Join(r.opts.Out, "acceptance-"+id+".p7m")); err != nil {
		t.Fatalf("resume: %v", err)
	}
	mustContain(t, r.stdout.String(), "sending the acceptance of offer "+id, "(accepted before: the same contract)")

	// The delivery: not there at first, then opened and acknowledged.
	r.m.notYet = 2
	r.opts.Wait = time.Minute
	r.stdout.Reset()
	if err := r.session(t).Receive(context.Background(), id); err != nil {
		t.Fatalf("receive: %v", err)
	}
	mustContain(t, r.stdout.String(), "delivery of "+id+": licence.txt", "signed by the merchant (verified), decrypted for you",
		"sent and accepted: order "+id+" acknowledged")
	if got, _ := os.ReadFile(filepath.Join(r.opts.Out, "licence.txt")); string(got) != document+id {
		t.Errorf("document %q", got)
	}
	a, err := cms.VerifyAcknowledgement(r.m.ack, r.m.protected.SignedData, []byte(document+id), cms.VerifyOptions{Registered: []*x509.Certificate{r.cred.Certificate()}})
	if err != nil || a.FileName != "licence.txt" {
		t.Errorf("acknowledgement: %v %+v", err, a)
	}
}

// TestPurchaseRefused: every answer that does not check out stops the
// purchase before anything is accepted or saved, with an error that says
// why and a hint.
func TestPurchaseRefused(t *testing.T) {
	other := func(t *testing.T) *keystore.Credential { return credential(t, t.TempDir(), "eve") }
	tests := []struct {
		name    string
		items   string
		max     int64
		alter   func(*testing.T, *merchant)
		want    error
		message string
		accepts int
	}{
		{"offer signed by another key", "LIC-STD=1", 0, func(t *testing.T, m *merchant) { m.offerSigner = other(t) }, nil, "offer: ", 0},
		{"offer made out to another buyer", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) { m.offerDoc = func(o *api.Offer) { o.Buyer = "00" } }, ErrBadDocument, "not to you", 0},
		{"offer for another basket", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) { m.offerDoc = func(o *api.Offer) { o.Lines[0].Qty = 9 } }, ErrBadDocument, "lines map[LIC-STD:9]", 0},
		{"offer expired", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) {
			m.offerDoc = func(o *api.Offer) { o.ValidUntil = "2001-01-01T00:00:00Z" }
		}, ErrBadDocument, "valid until", 0},
		{"offer above -max", "LIC-STD=1", 100, nil, nil, "above -max 1.00 EUR: not accepted", 0},
		{"category not allowed", "SUP-1Y=1", 0, nil, ErrRefused, "SUP-1Y is not among the categories you may buy", 0},
		{"unknown SKU", "NOPE=1", 0, nil, client.ErrUsage, "NOPE is not in the catalogue", 0},
		{"bad basket", "LIC-STD=0", 0, nil, client.ErrUsage, "QTY ≥ 1", 0},
		{"contract without countersignature", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) { m.noCounter = true }, ErrBadDocument, "no countersignature", 1},
		{"key not registered", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) { m.refuseAll = "unknown_buyer" }, ErrRefused, "GET private: 401 unknown_buyer", 0},
		{"clock off", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) { m.refuseAll = "stale_request" }, ErrRefused, "GET private: 401 stale_request", 0},
		{"over the limit", "LIC-STD=1", 0, func(_ *testing.T, m *merchant) {
			m.acceptFail = func(int) (int, string) { return 402, "over_limit" }
		}, ErrRefused, "POST accept: 402 over_limit: the merchant says over_limit", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			if tt.alter != nil {
				tt.alter(t, r.m)
			}
			r.opts.Items, r.opts.MaxCents = tt.items, tt.max
			_, err := r.session(t).Purchase(context.Background())
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.message)
			}
			if r.m.accepts != tt.accepts {
				t.Errorf("%d acceptances sent, want %d", r.m.accepts, tt.accepts)
			}
			if _, err := os.Stat(filepath.Join(r.opts.Out, "contract-"+strings.Repeat("ab", 16)+".p7m")); err == nil {
				t.Error("a contract was saved")
			}
			if tt.want != nil && Hint(err) == "" && client.Hint(err) == "" {
				t.Errorf("no hint for %v", err)
			}
		})
	}
}

// TestAcceptRetries: payment unavailable → the same acceptance again; when
// the retries run out, the error names the full command that resumes.
func TestAcceptRetries(t *testing.T) {
	r := newRig(t)
	r.opts.Items, r.opts.Retries = "LIC-STD=1", 1
	r.m.acceptFail = func(n int) (int, string) {
		if n == 1 {
			return 503, "payment_unavailable"
		}
		return 0, ""
	}
	if _, err := r.session(t).Purchase(context.Background()); err != nil {
		t.Fatalf("purchase: %v", err)
	}
	mustContain(t, r.stdout.String(), "503 payment_unavailable", "sending the same acceptance again", "all verified")

	r = newRig(t)
	r.opts.Items, r.opts.Retries, r.opts.Config = "LIC-STD=1", 1, "/etc/e2s.yaml"
	r.m.acceptFail = func(int) (int, string) { return 503, "payment_unavailable" }
	_, err := r.session(t).Purchase(context.Background())
	if !errors.Is(err, ErrRefused) || r.m.accepts != 2 {
		t.Fatalf("err = %v after %d acceptances", err, r.m.accepts)
	}
	mustContain(t, err.Error(), "'e2s buy -url "+r.srv.URL+" -cacert "+r.opts.CACert+" -out "+r.opts.Out+" -resume "+filepath.Join(r.opts.Out, "acceptance-"+strings.Repeat("ab", 16)+".p7m")+" -config /etc/e2s.yaml'")
	mustContain(t, Hint(err), "try again")
}

// TestReceiveNotDelivered: without -wait the merchant's not_delivered is
// the error, with a hint to wait.
func TestReceiveNotDelivered(t *testing.T) {
	r := newRig(t)
	r.m.notYet = 1
	err := r.session(t).Receive(context.Background(), strings.Repeat("cd", 16))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "404 not_delivered") {
		t.Fatalf("err = %v", err)
	}
	mustContain(t, Hint(err), "-wait")
	if err := r.session(t).Receive(context.Background(), "../x"); !errors.Is(err, client.ErrUsage) {
		t.Fatalf("bad order id: %v", err)
	}
}

// TestUntrustedAppliance: without -cacert the test server's certificate is
// unknown; the hint says to pass -cacert.
func TestUntrustedAppliance(t *testing.T) {
	r := newRig(t)
	r.opts.CACert = ""
	_, err := r.session(t).Catalogue(context.Background(), true)
	if err == nil {
		t.Fatal("an untrusted appliance was accepted")
	}
	mustContain(t, Hint(err), "-cacert")
}

func TestNewRefuses(t *testing.T) {
	r := newRig(t)
	for name, o := range map[string]Options{
		"http URL":         {URL: "http://appliance", Merchant: "merchant"},
		"unknown merchant": {URL: "https://appliance", Merchant: "nobody"},
		"bad cacert":       {URL: "https://appliance", Merchant: "merchant", CACert: filepath.Join(t.TempDir(), "none.pem")},
	} {
		if _, err := New(o, r.cred, r.store, io.Discard, slog.Default()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseItems(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"LIC-STD=2", "[{LIC-STD 2}]"},
		{"B=1, A=2,B=3", "[{A 2} {B 4}]"},
		{"A", ""},
		{"A=0", ""},
		{"A=x", ""},
		{"a b=1", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			items, err := ParseItems(tt.in)
			if tt.want == "" {
				if !errors.Is(err, client.ErrUsage) {
					t.Fatalf("ParseItems(%q) = %v, %v; want a usage error", tt.in, items, err)
				}
				return
			}
			if err != nil || fmtItems(items) != tt.want {
				t.Fatalf("ParseItems(%q) = %v, %v; want %s", tt.in, items, err, tt.want)
			}
		})
	}
}

func fmtItems(items []api.Item) string {
	var b strings.Builder
	b.WriteString("[")
	for i, it := range items {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString("{" + it.SKU + " " + string(rune('0'+it.Qty)) + "}")
	}
	return b.String() + "]"
}
