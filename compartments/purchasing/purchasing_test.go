package purchasing

import (
	"bytes"
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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e2sgate/e2sgate/compartments/keyhandler"
	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"google.golang.org/protobuf/proto"
)

// identity is a buyer's key and self-issued certificate.
type identity struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func (id identity) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.cert.Raw}))
}

func newIdentity(t testing.TB, name string) identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name, Organization: []string{"buyers"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyAgreement,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return identity{key, cert}
}

// fakeGate routes to a real key handler and to recording stand-ins for
// payment and inside.
type fakeGate struct {
	kh     *keyhandler.Handler
	mu     sync.Mutex
	calls  []string
	limits map[string]map[string]any
	auths  map[string]int // order id → authorisations
	// authOrders counts authorise requests per order; failCountersign
	// fails that many countersign calls.
	authOrders      map[string]int
	failCountersign int
	capture         map[string]int
	spooled         []string
}

func (g *fakeGate) Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, c.GetScript())
	comp, script, _ := strings.Cut(c.GetScript(), "/")
	var in map[string]any
	json.Unmarshal(c.GetBody(), &in)
	switch comp {
	case "keyhandler":
		if script == "countersign" && g.failCountersign > 0 {
			g.failCountersign--
			return nil, context.DeadlineExceeded
		}
		fwd := proto.Clone(c).(*callpb.Call)
		fwd.Script = script
		fwd.Caller = "purchasing"
		return g.kh.Handle(ctx, fwd)
	case "payment":
		switch script {
		case "limits":
			g.limits[in["buyer"].(string)] = in
			return protocol.JSON(200, in), nil
		case "authorize":
			card := in["card"].(map[string]any)
			if card["pan"] == "4000000000000002" {
				return protocol.JSON(200, map[string]any{"approved": false, "response_code": "51", "reason": "insufficient_funds"}), nil
			}
			g.authOrders[in["order_id"].(string)]++
			if g.auths[in["order_id"].(string)] == 0 { // idempotent, as payment is
				g.auths[in["order_id"].(string)]++
			}
			return protocol.JSON(200, map[string]any{"approved": true, "auth_code": "A1B2C3", "response_code": "00"}), nil
		case "capture":
			g.capture[in["order_id"].(string)]++
			return protocol.JSON(200, map[string]any{"captured": true}), nil
		}
	case "inside":
		g.spooled = append(g.spooled, in["order_id"].(string))
		return protocol.JSON(201, map[string]any{"spooled": true}), nil
	}
	return protocol.Error(404, "reg.unknown_script", "no such script"), nil
}

type fixture struct {
	t                       *testing.T
	dir                     string
	h                       *Handler
	gate                    *fakeGate
	mia, bob, eve, ola, rex identity
	merchant                *x509.Certificate
}

// newFixture: org acme with manager Mia and buyer Bob (software and
// documents up to 1000.00), org other with manager Ola; Eve is nobody;
// Rex is a revoked acme buyer.
func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	os.MkdirAll(filepath.Join(dir, "kh"), 0o700)
	kh, err := keyhandler.Open(log, filepath.Join(dir, "kh"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dir: dir, merchant: kh.Certificate(),
		gate: &fakeGate{kh: kh, limits: map[string]map[string]any{}, auths: map[string]int{}, authOrders: map[string]int{}, capture: map[string]int{}},
		mia:  newIdentity(t, "Mia"), bob: newIdentity(t, "Bob"), eve: newIdentity(t, "Eve"), ola: newIdentity(t, "Ola"), rex: newIdentity(t, "Rex")}
	writeEnrolment(t, filepath.Join(dir, "p", "enrolment.json"), map[string]any{"orgs": []any{
		map[string]any{"id": "acme", "name": "ACME Ltd", "terms": "Net 60 days; ACME framework contract 2026.",
			"prices": map[string]int64{"LIC-STD": 15900},
			"members": []any{
				map[string]any{"name": "Mia", "role": "manager", "certificate": f.mia.pem(), "limit_cents": 10000000, "categories": []string{"software", "documents", "services"}},
				map[string]any{"name": "Bob", "role": "buyer", "certificate": f.bob.pem(), "limit_cents": 100000, "categories": []string{"software", "documents"}},
				map[string]any{"name": "Rex", "certificate": f.rex.pem(), "limit_cents": 100000, "categories": []string{"software"}, "revoked": true},
			}},
		map[string]any{"id": "other", "name": "Other plc", "members": []any{
			map[string]any{"name": "Ola", "role": "manager", "certificate": f.ola.pem(), "limit_cents": 100000, "categories": []string{"software"}},
		}},
	}})
	f.restart()
	return f
}

func writeEnrolment(t *testing.T, path string, v any) {
	b, _ := json.Marshal(v)
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// restart is a fresh purchasing process over the same data dir.
func (f *fixture) restart() {
	h, err := New(slog.New(slog.NewTextHandler(io.Discard, nil)), f.gate, filepath.Join(f.dir, "p"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.h = h
}

// as is a call from outside with the identity's TLS client certificate.
func (f *fixture) as(id *identity, script, method, pathInfo string, body []byte) *callpb.Response {
	f.t.Helper()
	meta := map[string]string{"REQUEST_METHOD": method}
	if id != nil {
		meta["SSL_CLIENT_CERT"] = id.pem()
	}
	r, err := f.h.Handle(context.Background(), &callpb.Call{Script: script, Method: method, PathInfo: pathInfo, Body: body, Meta: meta, Caller: "outside"})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// signedChange sends a manager's change to the organisation, signed in the
// E2s-Signature header and bound to the current time.
func (f *fixture) signedChange(id *identity, m map[string]any) *callpb.Response {
	f.t.Helper()
	m["time"] = time.Now().UTC().Format(time.RFC3339)
	body, _ := json.Marshal(m)
	sig, err := cms.SignHeader(body, id.key, id.cert)
	if err != nil {
		f.t.Fatal(err)
	}
	meta := map[string]string{"REQUEST_METHOD": "POST", "HTTP_E2S_SIGNATURE": sig}
	r, err := f.h.Handle(context.Background(), &callpb.Call{Script: "buyers", Method: "POST", Body: body, Meta: meta, Caller: "outside"})
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

func errCode(r *callpb.Response) string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(r.GetBody(), &e)
	return e.Error
}

const softBasket = `{"items":[{"sku":"LIC-STD","qty":2},{"sku":"DOC-SPEC","qty":1}]}`

// signOffer gets an offer for id and adds id's signature.
func (f *fixture) signOffer(id identity, basket string) (offer, acceptance []byte, doc Offer) {
	f.t.Helper()
	r := f.as(&id, "offer", "POST", "", []byte(basket))
	if r.GetStatus() != 200 {
		f.t.Fatalf("offer = %d %s", r.GetStatus(), r.GetBody())
	}
	signed, err := cms.Verify(r.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}})
	if err != nil {
		f.t.Fatal(err)
	}
	json.Unmarshal(signed.Content, &doc)
	acc, err := cms.AddSigner(r.GetBody(), nil, id.key, []*x509.Certificate{id.cert}, cms.SignOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return r.GetBody(), acc, doc
}

func acceptBody(acc []byte, pan string) []byte {
	b, _ := json.Marshal(AcceptRequest{Acceptance: acc, Card: Card{PAN: pan, Expiry: "12/30"}})
	return b
}

const goodPAN = "4111111111111111"

func TestPrivateCatalogueAndPrices(t *testing.T) {
	f := newFixture(t)
	if r := f.as(nil, "private", "GET", "", nil); r.GetStatus() != 401 || errCode(r) != "unauthenticated" {
		t.Fatalf("anonymous private = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.eve, "private", "GET", "", nil); r.GetStatus() != 401 || errCode(r) != "unknown_buyer" {
		t.Fatalf("unregistered private = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.rex, "private", "GET", "", nil); r.GetStatus() != 403 || errCode(r) != "revoked" {
		t.Fatalf("revoked private = %d %s", r.GetStatus(), r.GetBody())
	}
	r := f.as(&f.bob, "private", "GET", "", nil)
	var pc struct {
		Terms    string           `json:"terms"`
		Buyer    MemberView       `json:"buyer"`
		Products []PrivateProduct `json:"products"`
	}
	if r.GetStatus() != 200 || json.Unmarshal(r.GetBody(), &pc) != nil {
		t.Fatalf("private = %d %s", r.GetStatus(), r.GetBody())
	}
	if !strings.Contains(pc.Terms, "ACME") || pc.Buyer.Name != "Bob" || pc.Buyer.Org != "acme" {
		t.Fatalf("private catalogue %+v", pc)
	}
	for _, p := range pc.Products {
		want := map[string]int64{"LIC-STD": 15900, "LIC-PRO": 49900}[p.SKU]
		if want != 0 && p.PriceCents != want {
			t.Errorf("%s at %d, want %d", p.SKU, p.PriceCents, want)
		}
		if p.Allowed != (p.Category != "services") {
			t.Errorf("%s (%s) allowed = %v", p.SKU, p.Category, p.Allowed)
		}
	}
	// Basket: list prices anonymously, contract prices for Bob.
	for _, tt := range []struct {
		id    *identity
		gross int64
	}{{nil, 44700 + 7562 + 343}, {&f.bob, 36700 + 6042 + 343}} {
		var p Priced
		r := f.as(tt.id, "basket", "POST", "", []byte(softBasket))
		if json.Unmarshal(r.GetBody(), &p); p.GrossCents != tt.gross {
			t.Errorf("basket gross %d, want %d (%s)", p.GrossCents, tt.gross, r.GetBody())
		}
	}
}

func TestOfferAcceptContractDeliverAcknowledge(t *testing.T) {
	f := newFixture(t)
	_, acc, doc := f.signOffer(f.bob, softBasket)
	if doc.Org != "acme" || doc.Buyer != Fingerprint(f.bob.cert) || doc.GrossCents != 36700+6042+343 {
		t.Fatalf("offer %+v", doc)
	}
	r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN))
	if r.GetStatus() != 201 || r.GetHeaders()["Location"] != "/cgi-bin/purchasing/order/"+doc.OfferID {
		t.Fatalf("accept = %d %s", r.GetStatus(), r.GetBody())
	}
	contract := r.GetBody()
	signed, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant, f.bob.cert}})
	if err != nil {
		t.Fatal(err)
	}
	if len(signed.Signers) != 3 || !signed.Signers[0].Certificate.Equal(f.merchant) || !signed.Signers[1].Certificate.Equal(f.bob.cert) ||
		!signed.Signers[2].Certificate.Equal(f.merchant) || len(signed.Signers[1].CounterSignatures) != 1 {
		t.Fatalf("contract signers %+v", signed.Signers)
	}
	// Accepting again is the same contract, authorised once.
	if r2 := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r2.GetStatus() != 200 || !bytes.Equal(r2.GetBody(), contract) {
		t.Fatalf("second accept = %d", r2.GetStatus())
	}
	if f.gate.auths[doc.OfferID] != 1 || len(f.gate.spooled) != 1 {
		t.Fatalf("authorised %d times, spooled %v", f.gate.auths[doc.OfferID], f.gate.spooled)
	}
	if f.gate.limits[doc.Buyer] == nil {
		t.Fatal("payment never got the buyer's limits")
	}
	// Not delivered yet.
	if r := f.as(&f.bob, "delivery", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 || errCode(r) != "not_delivered" {
		t.Fatalf("early delivery = %d %s", r.GetStatus(), r.GetBody())
	}
	// The back office confirms (through inside).
	body := []byte(`{"order_id":"` + doc.OfferID + `","delivered_at":"2026-11-23T02:00:00Z"}`)
	for i := 0; i < 2; i++ {
		r = f.as(nil, "delivered", "POST", "", body)
		if r.GetStatus() != 200 {
			t.Fatalf("delivered = %d %s", r.GetStatus(), r.GetBody())
		}
	}
	if f.gate.capture[doc.OfferID] != 1 {
		t.Fatalf("captured %d times", f.gate.capture[doc.OfferID])
	}
	// Only Bob gets it.
	if r := f.as(&f.mia, "delivery", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 {
		t.Fatalf("delivery to the manager = %d", r.GetStatus())
	}
	r = f.as(&f.bob, "delivery", "GET", "/"+doc.OfferID, nil)
	if r.GetStatus() != 200 {
		t.Fatalf("delivery = %d %s", r.GetStatus(), r.GetBody())
	}
	opened, err := cms.Open(r.GetBody(), f.bob.cert, f.bob.key, cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}}})
	if err != nil || !opened.Compressed || !bytes.Contains(opened.Content, []byte("licence key 2:")) {
		t.Fatalf("open delivery: %v", err)
	}
	// An acknowledgement by someone else, or of other content, is refused.
	eveAck, _ := cms.Acknowledge(opened.SignedData, opened.Content, "x.txt", f.eve.key, []*x509.Certificate{f.eve.cert},
		cms.AckOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}}})
	if r := f.as(nil, "ack", "POST", "/"+doc.OfferID, eveAck); r.GetStatus() != 403 {
		t.Fatalf("eve's ack = %d", r.GetStatus())
	}
	badAck, _ := cms.Acknowledge(opened.SignedData, append(opened.Content, '!'), "x.txt", f.bob.key, []*x509.Certificate{f.bob.cert},
		cms.AckOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}}})
	if r := f.as(nil, "ack", "POST", "/"+doc.OfferID, badAck); r.GetStatus() != 403 {
		t.Fatalf("ack of other content = %d", r.GetStatus())
	}
	ack, err := cms.Acknowledge(opened.SignedData, opened.Content, "order.txt", f.bob.key, []*x509.Certificate{f.bob.cert},
		cms.AckOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.as(nil, "ack", "POST", "/"+doc.OfferID, ack); r.GetStatus() != 200 {
		t.Fatalf("ack = %d %s", r.GetStatus(), r.GetBody())
	}
	// A restart keeps everything; the order shows to Bob and Mia, not Ola.
	f.restart()
	var o struct {
		Order
		Ack *struct {
			FileName string `json:"file_name"`
		} `json:"acknowledgement"`
	}
	r = f.as(&f.bob, "order", "GET", "/"+doc.OfferID, nil)
	if r.GetStatus() != 200 || json.Unmarshal(r.GetBody(), &o) != nil || o.Status != StatusAcknowledged || !bytes.Equal(o.Contract, contract) ||
		o.Ack == nil || o.Ack.FileName != "order.txt" || !o.Capture.Captured || o.BackOffice != "handed" || bytes.Contains(r.GetBody(), []byte("licence key")) {
		t.Fatalf("order after restart = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.mia, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 200 {
		t.Fatalf("manager's view = %d", r.GetStatus())
	}
	for _, id := range []*identity{&f.ola, nil} {
		if r := f.as(id, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() == 200 {
			t.Fatalf("order shown to %v", id)
		}
	}
	// Sealed at rest: nothing of the order in clear on disk.
	filepath.Walk(filepath.Join(f.dir, "p"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(doc.OfferID)) || bytes.Contains(b, []byte("LIC-STD")) && !strings.HasSuffix(p, "enrolment.json") {
				t.Errorf("%s holds the order in clear", p)
			}
		}
		return nil
	})
}

func TestAcceptRefusals(t *testing.T) {
	f := newFixture(t)
	offer, acc, doc := f.signOffer(f.bob, softBasket)
	altered := func(der []byte, from, to string) []byte { return bytes.Replace(der, []byte(from), []byte(to), 1) }

	// The buyer changes a line and signs the changed content itself, with
	// the merchant's SignerInfo kept.
	signedByBobOnly, _ := cms.Sign([]byte(strings.Replace(string(mustContent(t, offer)), `"qty":2`, `"qty":9`, 1)), f.bob.key, []*x509.Certificate{f.bob.cert}, cms.SignOptions{})
	eveAcc, _ := cms.AddSigner(offer, nil, f.eve.key, []*x509.Certificate{f.eve.cert}, cms.SignOptions{})
	miaAcc, _ := cms.AddSigner(offer, nil, f.mia.key, []*x509.Certificate{f.mia.cert}, cms.SignOptions{})
	twice, _ := cms.AddSigner(acc, nil, f.bob.key, []*x509.Certificate{f.bob.cert}, cms.SignOptions{})
	tests := []struct {
		name, code string
		acc        []byte
		status     int32
	}{
		{"line altered after both signatures", "bad_signature", altered(acc, `"qty":2`, `"qty":3`), 403},
		{"content replaced, signed by the buyer alone", "not_issued", signedByBobOnly, 409},
		{"buyer signature from an unregistered key", "bad_signature", eveAcc, 403},
		{"signed by another member than the offer's buyer", "bad_signature", miaAcc, 403},
		{"only the merchant's signature", "bad_signature", offer, 403},
		{"three signatures", "bad_signature", twice, 403},
		{"not CMS", "bad_signature", []byte("hello"), 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.as(nil, "accept", "POST", "", acceptBody(tt.acc, goodPAN))
			if r.GetStatus() != tt.status || errCode(r) != tt.code {
				t.Fatalf("= %d %s, want %d %s", r.GetStatus(), r.GetBody(), tt.status, tt.code)
			}
		})
	}
	if f.gate.auths[doc.OfferID] != 0 {
		t.Fatal("a refused acceptance reached payment")
	}
	// Declined by the acquirer: 402, no contract; a later good card works.
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, "4000000000000002")); r.GetStatus() != 402 || errCode(r) != "payment_declined" {
		t.Fatalf("declined = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.bob, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 {
		t.Fatalf("declined order exists: %d", r.GetStatus())
	}
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
		t.Fatalf("accept after decline = %d %s", r.GetStatus(), r.GetBody())
	}
	// The contract offered back as an acceptance is refused.
	contract := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)).GetBody()
	if r := f.as(nil, "accept", "POST", "", acceptBody(contract, goodPAN)); r.GetStatus() != 403 {
		t.Fatalf("contract as acceptance = %d", r.GetStatus())
	}
	// An altered contract does not verify.
	if _, err := cms.Verify(altered(contract, `"qty":2`, `"qty":3`), cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant, f.bob.cert}}); err == nil {
		t.Fatal("altered contract verifies")
	}
}

func mustContent(t *testing.T, der []byte) []byte {
	s, err := cms.Verify(der, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		t.Fatal(err)
	}
	return s.Content
}

func TestAuthority(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name, basket, code string
		id                 *identity
		status             int32
	}{
		{"over the limit", `{"items":[{"sku":"LIC-PRO","qty":3}]}`, "over_limit", &f.bob, 402},
		{"category not allowed", `{"items":[{"sku":"SUP-1Y","qty":1}]}`, "category", &f.bob, 403},
		{"revoked", softBasket, "revoked", &f.rex, 403},
		{"unregistered certificate", softBasket, "unknown_buyer", &f.eve, 401},
		{"manager within her limit", `{"items":[{"sku":"LIC-PRO","qty":3}]}`, "", &f.mia, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.as(tt.id, "offer", "POST", "", []byte(tt.basket))
			if r.GetStatus() != tt.status || (tt.code != "" && errCode(r) != tt.code) {
				t.Fatalf("offer = %d %s", r.GetStatus(), r.GetBody())
			}
		})
	}
	// The limit is checked again at acceptance: a manager lowers Bob's
	// limit after the offer.
	_, acc, _ := f.signOffer(f.bob, softBasket)
	change := map[string]any{"fingerprint": Fingerprint(f.bob.cert), "name": "Bob", "limit_cents": 100, "categories": []string{"software", "documents"}}
	// The TLS client certificate alone is the web front's word: not enough
	// for a change to the organisation.
	req, _ := json.Marshal(change)
	if r := f.as(&f.mia, "buyers", "POST", "", req); r.GetStatus() != 401 || errCode(r) != "signature_required" {
		t.Fatalf("unsigned change = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.signedChange(&f.mia, change); r.GetStatus() != 200 {
		t.Fatalf("lower limit = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 402 || errCode(r) != "over_limit" {
		t.Fatalf("accept over the new limit = %d %s", r.GetStatus(), r.GetBody())
	}
}

func TestManagers(t *testing.T) {
	f := newFixture(t)
	neu := newIdentity(t, "Neu")
	add := func(by *identity, m map[string]any) *callpb.Response {
		return f.signedChange(by, m)
	}
	if r := add(&f.bob, map[string]any{"certificate": neu.pem(), "name": "Neu", "limit_cents": 5000, "categories": []string{"software"}}); r.GetStatus() != 403 || errCode(r) != "not_manager" {
		t.Fatalf("buyer registers = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := add(&f.mia, map[string]any{"certificate": neu.pem(), "name": "Neu", "limit_cents": 50000, "categories": []string{"documents"}}); r.GetStatus() != 200 {
		t.Fatalf("manager registers = %d %s", r.GetStatus(), r.GetBody())
	}
	if l := f.gate.limits[Fingerprint(neu.cert)]; l == nil || l["limit_cents"].(float64) != 50000 || l["org"] != "acme" {
		t.Fatalf("payment limits %v", l)
	}
	if r := add(&f.ola, map[string]any{"certificate": neu.pem(), "name": "Neu", "limit_cents": 1, "categories": []string{}}); r.GetStatus() != 409 {
		t.Fatalf("other org takes Neu = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := add(&f.ola, map[string]any{"fingerprint": Fingerprint(f.bob.cert), "revoked": true}); r.GetStatus() != 404 {
		t.Fatalf("other org revokes Bob = %d %s", r.GetStatus(), r.GetBody())
	}
	f.restart() // registrations are durable
	if r := f.as(&neu, "offer", "POST", "", []byte(`{"items":[{"sku":"DOC-SPEC","qty":1}]}`)); r.GetStatus() != 200 {
		t.Fatalf("Neu's offer = %d %s", r.GetStatus(), r.GetBody())
	}
	r := f.as(&f.mia, "buyers", "GET", "", nil)
	if r.GetStatus() != 200 || !bytes.Contains(r.GetBody(), []byte(`"Neu"`)) || bytes.Contains(r.GetBody(), []byte("Ola")) {
		t.Fatalf("list = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := add(&f.mia, map[string]any{"fingerprint": Fingerprint(neu.cert), "name": "Neu", "revoked": true}); r.GetStatus() != 200 {
		t.Fatalf("revoke = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&neu, "private", "GET", "", nil); r.GetStatus() != 403 {
		t.Fatalf("revoked Neu = %d", r.GetStatus())
	}
	if l := f.gate.limits[Fingerprint(neu.cert)]; l["limit_cents"].(float64) != 0 {
		t.Fatalf("revoked buyer's limits at payment %v", l)
	}
}

func TestHeaderSignatureAndLogin(t *testing.T) {
	f := newFixture(t)
	call := func(method, script string, meta map[string]string, body []byte) *callpb.Response {
		r, _ := f.h.Handle(context.Background(), &callpb.Call{Script: script, Method: method, Body: body, Meta: meta})
		return r
	}
	body := []byte(softBasket)
	sig, _ := cms.SignHeader(body, f.bob.key, f.bob.cert)
	r := call("POST", "offer", map[string]string{"HTTP_E2S_SIGNATURE": sig}, body)
	if r.GetStatus() != 200 || !bytes.Contains(mustContent(t, r.GetBody()), []byte(Fingerprint(f.bob.cert))) {
		t.Fatalf("header-signed offer = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := call("POST", "offer", map[string]string{"HTTP_E2S_SIGNATURE": sig}, []byte(`{"items":[{"sku":"LIC-STD","qty":9}]}`)); r.GetStatus() != 401 {
		t.Fatalf("signature over another body = %d", r.GetStatus())
	}
	if r := call("POST", "offer", map[string]string{"HTTP_E2S_SIGNATURE": sig}, body); r.GetStatus() != 401 || errCode(r) != "replayed" {
		t.Fatalf("replayed header signature = %d %s", r.GetStatus(), r.GetBody())
	}
	// A manager's signed change carries its time.
	for _, tt := range []struct {
		time   string
		status int32
	}{{"", 401}, {time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), 401}, {time.Now().UTC().Format(time.RFC3339), 200}} {
		m, _ := json.Marshal(map[string]any{"fingerprint": Fingerprint(f.bob.cert), "name": "Bob", "limit_cents": 5000, "categories": []string{"software"}, "time": tt.time})
		msig, _ := cms.SignHeader(m, f.mia.key, f.mia.cert)
		if r := call("POST", "buyers", map[string]string{"HTTP_E2S_SIGNATURE": msig}, m); r.GetStatus() != tt.status {
			t.Fatalf("signed change at %q = %d %s", tt.time, r.GetStatus(), r.GetBody())
		}
	}
	eveSig, _ := cms.SignHeader(body, f.eve.key, f.eve.cert)
	if r := call("POST", "offer", map[string]string{"HTTP_E2S_SIGNATURE": eveSig}, body); r.GetStatus() != 401 {
		t.Fatalf("unregistered signer = %d", r.GetStatus())
	}
	// Signed login (E2S §6.2.1.1 steps 1–4).
	var ch struct{ Challenge string }
	json.Unmarshal(call("GET", "login", nil, nil).GetBody(), &ch)
	login, _ := json.Marshal(LoginRequest{Type: "e2sgate.login.v1", Challenge: ch.Challenge, Fingerprint: Fingerprint(f.bob.cert), Time: time.Now().UTC().Format(time.RFC3339)})
	lsig, _ := cms.SignHeader(login, f.bob.key, f.bob.cert)
	r = call("POST", "login", map[string]string{"HTTP_E2S_SIGNATURE": lsig}, login)
	var ans LoginAnswer
	if r.GetStatus() != 200 || json.Unmarshal(r.GetBody(), &ans) != nil || ans.Session == "" {
		t.Fatalf("login = %d %s", r.GetStatus(), r.GetBody())
	}
	ms, err := cms.Verify(ans.MerchantSignature, cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}})
	if err != nil || !bytes.Contains(ms.Content, []byte(ans.Session)) {
		t.Fatalf("merchant's login answer: %v", err)
	}
	if r := call("POST", "login", map[string]string{"HTTP_E2S_SIGNATURE": lsig}, login); r.GetStatus() != 401 {
		t.Fatalf("replayed login = %d", r.GetStatus())
	}
	if r := call("GET", "private", map[string]string{"HTTP_E2S_SESSION": ans.Session}, nil); r.GetStatus() != 200 {
		t.Fatalf("private with session = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := call("GET", "private", map[string]string{"HTTP_E2S_SESSION": "nope"}, nil); r.GetStatus() != 401 {
		t.Fatalf("private with a made-up session = %d", r.GetStatus())
	}
}

func TestStatement(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for _, bk := range []string{softBasket, `{"items":[{"sku":"LIC-PRO","qty":1}]}`} {
		_, acc, doc := f.signOffer(f.bob, bk)
		if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
			t.Fatalf("accept = %d", r.GetStatus())
		}
		ids = append(ids, doc.OfferID)
	}
	f.as(nil, "delivered", "POST", "", []byte(`{"order_id":"`+ids[0]+`"}`))
	// Ola's org has an order of its own that must not show.
	_, acc, _ := f.signOffer(f.ola, `{"items":[{"sku":"LIC-STD","qty":1}]}`)
	f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN))

	if r := f.as(&f.bob, "statement", "GET", "", nil); r.GetStatus() != 403 {
		t.Fatalf("buyer's statement = %d", r.GetStatus())
	}
	r := f.as(&f.mia, "statement", "GET", "", nil)
	signed, err := cms.Verify(r.GetBody(), cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}})
	if err != nil {
		t.Fatalf("statement = %d: %v", r.GetStatus(), err)
	}
	var st Statement
	json.Unmarshal(signed.Content, &st)
	// Order 1: 2×159.00 + 49.00; order 2: 499.00. 19%: 817.00 → 60.42+94.81; 7%: 49.00 → 3.43.
	want := []VATGroup{{Percent: 7, NetCents: 4900, VATCents: 343}, {Percent: 19, NetCents: 31800 + 49900, VATCents: 6042 + 9481}}
	if len(st.Orders) != 2 || st.Org != "acme" || len(st.VAT) != 2 || st.VAT[0] != want[0] || st.VAT[1] != want[1] ||
		st.NetCents != 86600 || st.GrossCents != 86600+343+6042+9481 || st.AuthorizedCents != st.GrossCents ||
		st.CapturedCents != 31800+4900+6042+343 {
		t.Fatalf("statement %+v", st)
	}
}

// A crash (or failure) after payment authorised but before the contract
// was stored: the buyer's retry makes the contract, and payment sees the
// same order id again (it answers the same authorisation).
func TestAcceptRetryAfterFailure(t *testing.T) {
	f := newFixture(t)
	_, acc, doc := f.signOffer(f.bob, softBasket)
	f.gate.failCountersign = 1
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 502 {
		t.Fatalf("accept with the key handler down = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.bob, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 {
		t.Fatalf("order without contract = %d", r.GetStatus())
	}
	f.restart()
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
		t.Fatalf("retry = %d %s", r.GetStatus(), r.GetBody())
	}
	if f.gate.authOrders[doc.OfferID] != 2 || len(f.gate.auths) != 1 {
		t.Fatalf("payment saw %d requests for %d orders", f.gate.authOrders[doc.OfferID], len(f.gate.auths))
	}
}

// An order stored in clear by the first slice stays readable.
func TestLegacyOrder(t *testing.T) {
	f := newFixture(t)
	id := "0123456789abcdef0123456789abcdef"
	os.MkdirAll(filepath.Join(f.dir, "p", "orders"), 0o700)
	os.WriteFile(filepath.Join(f.dir, "p", "orders", id+".json"), []byte(`{"order_id":"`+id+`","created":"2026-01-01T00:00:00Z","currency":"EUR","lines":[],"net_cents":5}`), 0o600)
	if r := f.as(nil, "order", "GET", "/"+id, nil); r.GetStatus() != 200 || !bytes.Contains(r.GetBody(), []byte(`"status":"stored"`)) {
		t.Fatalf("legacy order = %d %s", r.GetStatus(), r.GetBody())
	}
}
