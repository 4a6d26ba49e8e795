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
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
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
	users  []string // each call's user, beside calls
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
	g.users = append(g.users, c.GetUser())
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

// sigReq is one request as a client signs it (api.RequestToSign).
type sigReq struct {
	id                              *identity
	method, script, pathInfo, query string
	body                            []byte
	when                            time.Time // zero: now
	nonce                           string    // "": a fresh one
	session                         string
}

// meta signs r and returns the meta-variables outside would pass on.
func (f *fixture) meta(r sigReq) map[string]string {
	f.t.Helper()
	meta := map[string]string{"REQUEST_METHOD": r.method}
	if r.session != "" {
		meta["HTTP_E2S_SESSION"] = r.session
	}
	if r.id == nil {
		return meta
	}
	if r.when.IsZero() {
		r.when = time.Now()
	}
	if r.nonce == "" {
		r.nonce = newID()
	}
	fp, ts := Fingerprint(r.id.cert), r.when.UTC().Format(time.RFC3339)
	sig, err := cms.SignHeader(api.RequestToSign(r.method, api.PathPrefix+r.script+r.pathInfo, r.query, r.body, ts, r.nonce, fp), r.id.key, r.id.cert)
	if err != nil {
		f.t.Fatal(err)
	}
	meta["HTTP_E2S_SIGNATURE"], meta["HTTP_E2S_BUYER"], meta["HTTP_E2S_TIME"], meta["HTTP_E2S_NONCE"] = sig, fp, ts, r.nonce
	meta["SSL_CLIENT_CERT"] = r.id.pem() // the TLS hint a real client gives too
	return meta
}

// send is the call of r with meta as outside passes it.
func (f *fixture) send(r sigReq, meta map[string]string) *callpb.Response {
	f.t.Helper()
	resp, err := f.h.Handle(context.Background(), &callpb.Call{Script: r.script, Method: r.method, PathInfo: r.pathInfo, Query: r.query, Body: r.body, Meta: meta, Caller: "outside"})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp
}

// as is a call from outside signed by the identity (nil: anonymous).
func (f *fixture) as(id *identity, script, method, pathInfo string, body []byte) *callpb.Response {
	f.t.Helper()
	r := sigReq{id: id, method: method, script: script, pathInfo: pathInfo, body: body}
	return f.send(r, f.meta(r))
}

// signedChange sends a manager's change to the organisation, signed.
func (f *fixture) signedChange(id *identity, m map[string]any) *callpb.Response {
	f.t.Helper()
	body, _ := json.Marshal(m)
	return f.as(id, "buyers", "POST", "", body)
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
	r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN))
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
	if r2 := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r2.GetStatus() != 200 || !bytes.Equal(r2.GetBody(), contract) {
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
			r := f.as(&f.bob, "accept", "POST", "", acceptBody(tt.acc, goodPAN))
			if r.GetStatus() != tt.status || errCode(r) != tt.code {
				t.Fatalf("= %d %s, want %d %s", r.GetStatus(), r.GetBody(), tt.status, tt.code)
			}
		})
	}
	if f.gate.auths[doc.OfferID] != 0 {
		t.Fatal("a refused acceptance reached payment")
	}
	// Declined by the acquirer: 402, no contract; a later good card works.
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, "4000000000000002")); r.GetStatus() != 402 || errCode(r) != "payment_declined" {
		t.Fatalf("declined = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.bob, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 {
		t.Fatalf("declined order exists: %d", r.GetStatus())
	}
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
		t.Fatalf("accept after decline = %d %s", r.GetStatus(), r.GetBody())
	}
	// The contract offered back as an acceptance is refused.
	contract := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)).GetBody()
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(contract, goodPAN)); r.GetStatus() != 403 {
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
	unsigned := sigReq{method: "POST", script: "buyers", body: req}
	meta := f.meta(unsigned)
	meta["SSL_CLIENT_CERT"] = f.mia.pem()
	if r := f.send(unsigned, meta); r.GetStatus() != 401 || errCode(r) != "unauthenticated" {
		t.Fatalf("unsigned change = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.signedChange(&f.mia, change); r.GetStatus() != 200 {
		t.Fatalf("lower limit = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 402 || errCode(r) != "over_limit" {
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

// login runs the signed login of id and returns the session.
func (f *fixture) login(id *identity) string {
	f.t.Helper()
	var ch struct{ Challenge string }
	json.Unmarshal(f.as(nil, "login", "GET", "", nil).GetBody(), &ch)
	body, _ := json.Marshal(LoginRequest{Type: "e2sgate.login.v1", Challenge: ch.Challenge, Fingerprint: Fingerprint(id.cert), Time: time.Now().UTC().Format(time.RFC3339)})
	r := sigReq{id: id, method: "POST", script: "login", body: body}
	meta := f.meta(r)
	resp := f.send(r, meta)
	var ans LoginAnswer
	if resp.GetStatus() != 200 || json.Unmarshal(resp.GetBody(), &ans) != nil || ans.Session == "" {
		f.t.Fatalf("login = %d %s", resp.GetStatus(), resp.GetBody())
	}
	ms, err := cms.Verify(ans.MerchantSignature, cms.VerifyOptions{Registered: []*x509.Certificate{f.merchant}})
	if err != nil || !bytes.Contains(ms.Content, []byte(ans.Session)) {
		f.t.Fatalf("merchant's login answer: %v", err)
	}
	if again := f.send(r, meta); again.GetStatus() != 401 {
		f.t.Fatalf("replayed login = %d", again.GetStatus())
	}
	return ans.Session
}

// refusal checks a refused credential: status, error code, reason id in
// the body and X-E2s-Reason, a next step, and nothing of the
// organisation's in the answer.
func refusal(t *testing.T, r *callpb.Response, status int32, code, reason string) {
	t.Helper()
	var e api.Error
	json.Unmarshal(r.GetBody(), &e)
	if r.GetStatus() != status || e.Error != code || e.Reason != reason || r.GetHeaders()["X-E2s-Reason"] != reason || e.Message == "" {
		t.Fatalf("answer = %d %s %v, want %d %s %s", r.GetStatus(), r.GetBody(), r.GetHeaders(), status, code, reason)
	}
	for _, secret := range []string{"ACME", "acme", "Net 60", "15900", "auth_code"} {
		if bytes.Contains(r.GetBody(), []byte(secret)) {
			t.Fatalf("refusal leaks %q: %s", secret, r.GetBody())
		}
	}
}

// TestForgedClientCertificate: a compromised outside puts the manager's
// (public) certificate into SSL_CLIENT_CERT, with or without a session
// value it stole, and reads nothing that needs a person.
func TestForgedClientCertificate(t *testing.T) {
	f := newFixture(t)
	_, acc, doc := f.signOffer(f.bob, softBasket)
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
		t.Fatalf("accept = %d %s", r.GetStatus(), r.GetBody())
	}
	sess := f.login(&f.mia)
	for _, tt := range []struct {
		name, script, method, pathInfo, session string
		body                                    []byte
		code                                    string
	}{
		{"private catalogue", "private", "GET", "", "", nil, "unauthenticated"},
		{"statement", "statement", "GET", "", "", nil, "unauthenticated"},
		{"buyers", "buyers", "GET", "", "", nil, "unauthenticated"},
		{"order", "order", "GET", "/" + doc.OfferID, "", nil, "unauthenticated"},
		{"delivery", "delivery", "GET", "/" + doc.OfferID, "", nil, "unauthenticated"},
		{"register a buyer", "buyers", "POST", "", "", []byte(`{"certificate":` + strconvQuote(f.eve.pem()) + `,"name":"Eve","role":"manager","limit_cents":1}`), "unauthenticated"},
		{"stolen session, statement", "statement", "GET", "", sess, nil, "signature_required"},
		{"stolen session, private", "private", "GET", "", sess, nil, "signature_required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := sigReq{method: tt.method, script: tt.script, pathInfo: tt.pathInfo, body: tt.body, session: tt.session}
			meta := f.meta(r)
			meta["SSL_CLIENT_CERT"], meta["SSL_CLIENT_FINGERPRINT"], meta["SSL_CLIENT_VERIFY"] = f.mia.pem(), Fingerprint(f.mia.cert), "SUCCESS"
			refusal(t, f.send(r, meta), 401, tt.code, "purchasing.signature_required")
		})
	}
	if b := f.h.lookup(Fingerprint(f.eve.cert)); b != nil {
		t.Fatal("the forged registration was applied")
	}
	// The manager's own signed request in that session reads the statement.
	if r := f.send(sigReq{id: &f.mia, method: "GET", script: "statement", session: sess}, f.meta(sigReq{id: &f.mia, method: "GET", script: "statement", session: sess})); r.GetStatus() != 200 {
		t.Fatalf("signed statement in session = %d %s", r.GetStatus(), r.GetBody())
	}
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// TestBadSignedRequests: each bad credential is refused with its reason,
// and the refused request changes nothing.
func TestBadSignedRequests(t *testing.T) {
	f := newFixture(t)
	bobSess := f.login(&f.bob)
	revoke := []byte(`{"fingerprint":"` + Fingerprint(f.bob.cert) + `","name":"Bob","limit_cents":0,"categories":[],"revoked":true}`)
	good := func() sigReq { return sigReq{id: &f.mia, method: "POST", script: "buyers", body: revoke} }
	for _, tt := range []struct {
		name         string
		meta         func() map[string]string
		status       int32
		code, reason string
	}{
		{"malformed signature", func() map[string]string {
			m := f.meta(good())
			m["HTTP_E2S_SIGNATURE"] = "not base64!"
			return m
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"signed by another key", func() map[string]string {
			m, eve := f.meta(good()), f.meta(sigReq{id: &f.eve, method: "POST", script: "buyers", body: revoke})
			m["HTTP_E2S_SIGNATURE"] = eve["HTTP_E2S_SIGNATURE"]
			return m
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"signature over another path", func() map[string]string {
			return f.meta(sigReq{id: &f.mia, method: "POST", script: "offer", body: revoke})
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"signature over another body", func() map[string]string {
			return f.meta(sigReq{id: &f.mia, method: "POST", script: "buyers", body: []byte(`{}`)})
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"signature over another query", func() map[string]string {
			return f.meta(sigReq{id: &f.mia, method: "POST", script: "buyers", query: "x=1", body: revoke})
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"no nonce", func() map[string]string {
			m := f.meta(good())
			delete(m, "HTTP_E2S_NONCE")
			return m
		}, 401, "bad_signature", "purchasing.bad_signature"},
		{"reused nonce", func() map[string]string {
			// A request answered before under this nonce (another one,
			// harmless), then the change signed anew with the same nonce.
			seen := sigReq{id: &f.mia, method: "GET", script: "private", nonce: "reused-nonce-00000000001"}
			if r := f.send(seen, f.meta(seen)); r.GetStatus() != 200 {
				t.Fatalf("first use of the nonce = %d %s", r.GetStatus(), r.GetBody())
			}
			r := good()
			r.nonce = seen.nonce
			return f.meta(r)
		}, 401, "replayed", "purchasing.replayed"},
		{"unknown key", func() map[string]string {
			return f.meta(sigReq{id: &f.eve, method: "POST", script: "buyers", body: revoke})
		}, 401, "unknown_buyer", "purchasing.unknown_key"},
		{"stale time", func() map[string]string {
			r := good()
			r.when = time.Now().Add(-time.Hour)
			return f.meta(r)
		}, 401, "stale_request", "purchasing.stale_request"},
		{"future time", func() map[string]string {
			r := good()
			r.when = time.Now().Add(time.Hour)
			return f.meta(r)
		}, 401, "stale_request", "purchasing.stale_request"},
		{"another key in bob's session", func() map[string]string {
			r := good()
			r.session = bobSess
			return f.meta(r)
		}, 401, "bad_session", "purchasing.bad_session"},
		{"made-up session", func() map[string]string {
			r := good()
			r.session = "nope"
			return f.meta(r)
		}, 401, "bad_session", "purchasing.bad_session"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refusal(t, f.send(good(), tt.meta()), tt.status, tt.code, tt.reason)
			if b := f.h.lookup(Fingerprint(f.bob.cert)); b == nil || b.Revoked {
				t.Fatal("a refused change was applied")
			}
		})
	}
}

// TestReplay: a signed request is answered once — by nonce, not by the
// signature's bytes, also after a restart; a full guard refuses.
func TestReplay(t *testing.T) {
	f := newFixture(t)
	r := sigReq{id: &f.bob, method: "GET", script: "private", nonce: "replay-nonce-0000000001"}
	first := f.meta(r)
	if resp := f.send(r, first); resp.GetStatus() != 200 {
		t.Fatalf("first = %d %s", resp.GetStatus(), resp.GetBody())
	}
	t.Run("same request", func(t *testing.T) {
		refusal(t, f.send(r, first), 401, "replayed", "purchasing.replayed")
	})
	t.Run("re-encoded signature", func(t *testing.T) {
		// ECDSA signs with fresh randomness: a second signature over the
		// very same request is other bytes, as a re-encoding would be.
		again := f.meta(r)
		if again["HTTP_E2S_SIGNATURE"] == first["HTTP_E2S_SIGNATURE"] {
			t.Fatal("same signature bytes")
		}
		refusal(t, f.send(r, again), 401, "replayed", "purchasing.replayed")
	})
	t.Run("after a restart", func(t *testing.T) {
		f.restart()
		refusal(t, f.send(r, first), 401, "replayed", "purchasing.replayed")
		if resp := f.as(&f.bob, "private", "GET", "", nil); resp.GetStatus() != 200 {
			t.Fatalf("fresh request after restart = %d %s", resp.GetStatus(), resp.GetBody())
		}
	})
	t.Run("full guard refuses", func(t *testing.T) {
		f.h.replay.max = len(f.h.replay.seen)
		refusal(t, f.as(&f.bob, "private", "GET", "", nil), 503, "replay_guard_unavailable", "purchasing.replay_guard_unavailable")
		refusal(t, f.send(r, first), 401, "replayed", "purchasing.replayed") // still remembered
	})
}

func TestStatement(t *testing.T) {
	f := newFixture(t)
	var ids []string
	for _, bk := range []string{softBasket, `{"items":[{"sku":"LIC-PRO","qty":1}]}`} {
		_, acc, doc := f.signOffer(f.bob, bk)
		if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
			t.Fatalf("accept = %d", r.GetStatus())
		}
		ids = append(ids, doc.OfferID)
	}
	f.as(nil, "delivered", "POST", "", []byte(`{"order_id":"`+ids[0]+`"}`))
	// Ola's org has an order of its own that must not show.
	_, acc, _ := f.signOffer(f.ola, `{"items":[{"sku":"LIC-STD","qty":1}]}`)
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 403 || errCode(r) != "not_your_offer" {
		t.Fatalf("Bob sends Ola's acceptance = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.ola, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
		t.Fatalf("Ola's acceptance = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(nil, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 401 || errCode(r) != "unauthenticated" {
		t.Fatalf("unsigned acceptance = %d %s", r.GetStatus(), r.GetBody())
	}

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
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 502 {
		t.Fatalf("accept with the key handler down = %d %s", r.GetStatus(), r.GetBody())
	}
	if r := f.as(&f.bob, "order", "GET", "/"+doc.OfferID, nil); r.GetStatus() != 404 {
		t.Fatalf("order without contract = %d", r.GetStatus())
	}
	f.restart()
	if r := f.as(&f.bob, "accept", "POST", "", acceptBody(acc, goodPAN)); r.GetStatus() != 201 {
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
