package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/e2sgate/e2sgate/internal/auditlog"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/testutil"
)

// credentialPEM is the file a browser buyer holds: the PKCS#8 key and the
// registered certificate.
func credentialPEM(t testing.TB, id *puIdentity) []byte {
	t.Helper()
	k, err := x509.MarshalPKCS8PrivateKey(id.key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), id.pem()...)
}

// merchantCert is the key handler's certificate as the web front serves it.
func (a *appliance) merchantCert(t testing.TB) *x509.Certificate {
	t.Helper()
	resp, body := a.do("GET", "/cgi-bin/keyhandler/certificate", "", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("merchant certificate: %d %s", resp.StatusCode, body)
	}
	blk, _ := pem.Decode(body)
	if blk == nil {
		t.Fatalf("merchant certificate is not PEM: %q", body)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// artifactDir is where browser screenshots are kept: $E2E_ARTIFACTS, else
// bin/artifacts in the repository (build output, not committed).
func artifactDir(t testing.TB) string {
	dir := os.Getenv("E2E_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "bin", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts Debian's chromium headless with a fresh profile. The
// appliance's certificate is self-signed; the browser is told to accept
// exactly its public key (--ignore-certificate-errors-spki-list, honoured
// with a --user-data-dir), in this test only.
func newBrowser(t testing.TB, a *appliance) context.Context {
	t.Helper()
	pemBytes, err := os.ReadFile(filepath.Join(a.dataDir(), "outside", "tls", "tls.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("web front certificate is not PEM")
	}
	web, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(web.RawSubjectPublicKeyInfo)
	exe := testutil.Requires(t, "chromium")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(spki[:])),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 1800),
	}
	// A generous bound so that a hung browser fails the test instead of
	// the whole run; nothing is asserted about how long a step takes.
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 4*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf), chromedp.WithErrorf(func(f string, args ...any) {
		// cdproto lags behind Debian's chromium: events with enum values
		// it does not know yet are not errors of the page.
		if msg := fmt.Sprintf(f, args...); !strings.Contains(msg, "could not unmarshal event") {
			t.Logf("chromedp: %s", msg)
		}
	}))
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancelTimeout() })
	if err := chromedp.Run(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

func brRun(t testing.TB, ctx context.Context, step string, actions ...chromedp.Action) {
	t.Helper()
	// A step that never completes fails here, with the page as it is, rather
	// than at the test's overall deadline; no step is timed otherwise.
	sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, actions...); err != nil {
		var page string
		chromedp.Run(ctx, chromedp.Text("body", &page, chromedp.ByQuery))
		t.Fatalf("%s: %v\npage:\n%s", step, err, page)
	}
}

// brAwait runs actions, then waits until the page has finished the step —
// the status element sel says ok or bad — and fails with the page's
// message if it says bad.
func brAwait(t testing.TB, ctx context.Context, step, sel string, actions ...chromedp.Action) {
	t.Helper()
	actions = append(actions, chromedp.WaitVisible(sel+".ok, "+sel+".bad", chromedp.ByQuery))
	brRun(t, ctx, step, actions...)
	var ok bool
	brRun(t, ctx, step, chromedp.Evaluate(`document.querySelector("`+sel+`").classList.contains("ok")`, &ok))
	if !ok {
		t.Fatalf("%s: the page says: %s", step, brText(t, ctx, sel))
	}
}

func brText(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	brRun(t, ctx, "read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

func brCount(t testing.TB, ctx context.Context, sel string) int {
	t.Helper()
	var nodes []*cdp.Node
	brRun(t, ctx, "count "+sel, chromedp.Nodes(sel, &nodes, chromedp.ByQueryAll, chromedp.AtLeast(0)))
	return len(nodes)
}

func brContains(t testing.TB, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s: %q does not contain %q", what, got, w)
		}
	}
}

// TestStorefrontBrowser buys through the storefront page in headless
// Chromium: browse the public catalogue, load the buyer's key and
// certificate, log in with a signed message, browse the private catalogue,
// fill the basket, get the merchant's signed offer and check it, accept it
// with a signature made by WebCrypto, and check the countersigned contract.
// It asserts on what the page shows and on the appliance's side (order,
// contract, audit).
func TestStorefrontBrowser(t *testing.T) {
	acqConfig, startAcquirer := puAcquirer(t)
	a := startAppliance(t, acqConfig)
	startAcquirer(a)
	mia, bob := puNewIdentity(t, "Mia"), puNewIdentity(t, "Bob")
	puEnrol(t, a, mia, bob)
	merchant := a.merchantCert(t)
	credFile := filepath.Join(t.TempDir(), "bob.pem")
	if err := os.WriteFile(credFile, credentialPEM(t, bob), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t, a)

	// The page holds the buyer's key: no inline or foreign script may run.
	resp, _ := a.do("GET", "/", "", nil)
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") {
		t.Fatalf("storefront CSP %q", csp)
	}

	// Public catalogue.
	brAwait(t, ctx, "load the storefront", "#ready", chromedp.Navigate(a.URL+"/"))
	brRun(t, ctx, "public catalogue", chromedp.WaitVisible(`#catalogue tr[data-sku="LIC-STD"]`, chromedp.ByQuery))
	brContains(t, "merchant", brText(t, ctx, "#merchant"), "e2sgate merchant", brFingerprint(merchant))
	brContains(t, "public catalogue", brText(t, ctx, `#catalogue tr[data-sku="LIC-STD"]`), "Standard software licence", "199.00 EUR")

	// The buyer's credential and the signed log-in (E2S §6.2.1.1 steps 1-4).
	brAwait(t, ctx, "load the credential", "#cred-status",
		chromedp.SetUploadFiles(`#cred-file`, []string{credFile}, chromedp.ByQuery))
	brContains(t, "credential", brText(t, ctx, "#cred-status"), "of Bob loaded", bob.fp())
	brAwait(t, ctx, "log in", "#login-status", chromedp.Click(`#login`, chromedp.ByQuery))
	brContains(t, "log-in", brText(t, ctx, "#login-status"), "logged in as Bob (acme, buyer)", "merchant's answer signature verified")
	brRun(t, ctx, "private catalogue",
		chromedp.WaitVisible(`#catalogue tr[data-sku="LIC-STD"] button.add`, chromedp.ByQuery))
	brContains(t, "private catalogue", brText(t, ctx, "#cat-title"), "Private catalogue of ACME Ltd")
	brContains(t, "contract price", brText(t, ctx, `#catalogue tr[data-sku="LIC-STD"]`), "159.00 EUR", "199.00 EUR")
	if n := brCount(t, ctx, `#catalogue tr[data-sku="SUP-1Y"] button.add`); n != 0 {
		t.Fatalf("services are not among Bob's categories, yet the page offers to add SUP-1Y")
	}

	// Basket: 2 x LIC-STD (contract price, 19 %), 1 x DOC-SPEC (7 %).
	brRun(t, ctx, "fill the basket",
		chromedp.Click(`button.add[data-sku="LIC-STD"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#basket tr[data-sku="LIC-STD"]`, chromedp.ByQuery),
		chromedp.Click(`button.add[data-sku="LIC-STD"]`, chromedp.ByQuery),
		chromedp.Click(`button.add[data-sku="DOC-SPEC"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#basket tr[data-sku="DOC-SPEC"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`#basket tr[data-rate="7"]`, chromedp.ByQuery))
	// net 2*159.00 + 49.00 = 367.00; VAT 60.42 + 3.43; gross 430.85
	brContains(t, "basket", brText(t, ctx, "#basket"), "318.00 EUR", "49.00 EUR", "60.42 EUR", "3.43 EUR", "gross 430.85 EUR")

	// Someone between merchant and buyer alters the offer (one quantity, same
	// length): the page refuses it and offers no acceptance.
	stop, altered := alterOffers(t, ctx)
	brRun(t, ctx, "altered offer",
		chromedp.Click(`#get-offer`, chromedp.ByQuery),
		chromedp.WaitVisible(`#offer-status.ok, #offer-status.bad`, chromedp.ByQuery))
	stop()
	if !altered.Load() {
		t.Fatal("the offer was not altered on its way to the page")
	}
	brContains(t, "altered offer", brText(t, ctx, "#offer-status"), "no valid offer: signer 1: Message digest doesn't match")
	var acceptOffered bool
	brRun(t, ctx, "accept button", chromedp.Evaluate(`!document.querySelector("#accept").disabled`, &acceptOffered))
	if acceptOffered {
		t.Fatal("the page offers to accept an altered offer")
	}

	// The merchant's signed offer (step 5), checked in the page.
	brAwait(t, ctx, "get the offer", "#offer-status", chromedp.Click(`#get-offer`, chromedp.ByQuery))
	brContains(t, "offer status", brText(t, ctx, "#offer-status"), "merchant signature verified", brFingerprint(merchant))
	offerID := brText(t, ctx, "#offer-id")
	brContains(t, "offer", brText(t, ctx, "#offer-body"), "acme", "Standard software licence", "Technical specification",
		"19 %", "7 %", "gross 430.85 EUR", "Terms:")

	// Acceptance signed with the buyer's key in WebCrypto (step 6), and the
	// contract (step 7) checked in the page.
	brAwait(t, ctx, "accept the offer", "#contract-status",
		chromedp.SendKeys(`#pan`, puPAN, chromedp.ByQuery),
		chromedp.SendKeys(`#expiry`, puExpiry, chromedp.ByQuery),
		chromedp.Click(`#accept`, chromedp.ByQuery))
	brRun(t, ctx, "order", chromedp.WaitVisible(`#order-state`, chromedp.ByQuery))
	brContains(t, "contract", brText(t, ctx, "#contract-status"), "three signatures verified")
	if got := brText(t, ctx, "#order-id"); got != offerID {
		t.Fatalf("order id %q, offer id %q", got, offerID)
	}
	signers := brText(t, ctx, "#contract-signers")
	brContains(t, "contract signers", signers, "merchant (offer): e2sgate merchant", "buyer (acceptance): Bob —",
		"merchant (confirmation): e2sgate merchant", "countersignature over the buyer's signature — verified")
	if n := brCount(t, ctx, "#contract-signers li"); n != 4 {
		t.Fatalf("%d lines about the contract's signatures, want 4", n)
	}
	brAwait(t, ctx, "no content security policy violation", "#ready")
	var png []byte
	brRun(t, ctx, "screenshot", chromedp.FullScreenshot(&png, 100))
	shot := filepath.Join(artifactDir(t), "storefront-contract.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the contract step: %s", shot)

	// The appliance's side: the order is stored with the contract the page
	// showed, signed by merchant, buyer (registered certificate), merchant.
	resp, body := puDo(t, a, puClient(a, bob), "GET", "/cgi-bin/purchasing/order/"+offerID, "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("order: %d %s", resp.StatusCode, body)
	}
	var order struct {
		Status        string `json:"status"`
		Org           string `json:"org"`
		Buyer         string `json:"buyer"`
		GrossCents    int64  `json:"gross_cents"`
		Contract      string `json:"contract"`
		Authorization struct {
			Approved bool `json:"approved"`
		} `json:"authorization"`
	}
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatalf("order: %v: %s", err, body)
	}
	if order.Org != "acme" || order.Buyer != bob.fp() || order.GrossCents != 43085 || !order.Authorization.Approved {
		t.Fatalf("order as stored: %s", body)
	}
	contract, err := base64.StdEncoding.DecodeString(order.Contract)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{merchant, bob.cert}})
	if err != nil {
		t.Fatalf("stored contract: %v", err)
	}
	if len(signed.Signers) != 3 || !signed.Signers[0].Certificate.Equal(merchant) || !signed.Signers[1].Certificate.Equal(bob.cert) ||
		!signed.Signers[2].Certificate.Equal(merchant) || len(signed.Signers[1].CounterSignatures) != 1 {
		t.Fatalf("stored contract signers: %+v", signed.Signers)
	}
	a.audited(func(r auditlog.Record) bool {
		return r.Script == "purchasing/accept" && r.Caller == "outside" && r.Decision == "allow" && r.Status == 201
	})
	a.audited(func(r auditlog.Record) bool {
		return r.Script == "keyhandler/countersign" && r.Caller == "purchasing" && r.Decision == "allow"
	})

	// Delivery (step 9): once the back office confirms, the page (which
	// keeps asking) offers the delivery; it opens it with the buyer's key,
	// checks the merchant's signature, and sends the signed acknowledgement.
	confirmDelivery(t, a, offerID)
	brAwait(t, ctx, "open and acknowledge the delivery", "#delivery-status",
		chromedp.WaitEnabled(`#get-delivery`, chromedp.ByQuery),
		chromedp.Click(`#get-delivery`, chromedp.ByQuery))
	brContains(t, "delivery", brText(t, ctx, "#delivery-status"), "delivery opened and acknowledged: order acknowledged")
	brContains(t, "delivered document", brText(t, ctx, "#delivery-document"), offerID)
	brContains(t, "delivery", brText(t, ctx, "#delivery-body"), "signed by e2sgate merchant (verified), decompressed")
	brRun(t, ctx, "acknowledgement recorded", chromedp.WaitVisible(`#ack-recorded`, chromedp.ByQuery))
	brRun(t, ctx, "screenshot", chromedp.FullScreenshot(&png, 100))
	shot = filepath.Join(artifactDir(t), "storefront-delivery.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the delivery step: %s", shot)
	resp, body = puDo(t, a, puClient(a, bob), "GET", "/cgi-bin/purchasing/order/"+offerID, "", nil, nil)
	var acked struct {
		Status string `json:"status"`
		Ack    *struct {
			FileName string `json:"file_name"`
			FileSize int    `json:"file_size"`
		} `json:"acknowledgement"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &acked) != nil || acked.Status != "acknowledged" || acked.Ack == nil || acked.Ack.FileName == "" {
		t.Fatalf("order after the page's acknowledgement = %d %s", resp.StatusCode, body)
	}
	brContains(t, "acknowledgement", brText(t, ctx, "#ack-recorded"), acked.Ack.FileName)
	a.audited(func(r auditlog.Record) bool {
		return r.Script == "purchasing/ack" && r.Caller == "outside" && r.Decision == "allow" && r.Status == 200
	})

	// Sessions live in purchasing's memory: after its restart the page's
	// next request is refused (401 purchasing.bad_session) and the page
	// tells the buyer what to do — log in again — and that works.
	puKill(t, a, "purchasing")
	brRun(t, ctx, "a request in a session purchasing forgot",
		chromedp.Click(`#refresh-order`, chromedp.ByQuery),
		chromedp.WaitVisible(`#login-status.bad`, chromedp.ByQuery))
	brContains(t, "session ended", brText(t, ctx, "#login-status"), "your session has ended", "purchasing.bad_session", "log in again")
	brAwait(t, ctx, "log in again", "#login-status", chromedp.Click(`#login`, chromedp.ByQuery))
	brContains(t, "log-in again", brText(t, ctx, "#login-status"), "logged in as Bob (acme, buyer)")

	// The purchasing manager reads the organisation's signed statement in
	// the page: Bob's order, acknowledged, authorised and captured.
	miaFile := filepath.Join(t.TempDir(), "mia.pem")
	if err := os.WriteFile(miaFile, credentialPEM(t, mia), 0o600); err != nil {
		t.Fatal(err)
	}
	brAwait(t, ctx, "the manager's credential", "#cred-status",
		chromedp.Navigate(a.URL+"/"),
		chromedp.WaitVisible(`#ready.ok`, chromedp.ByQuery),
		chromedp.SetUploadFiles(`#cred-file`, []string{miaFile}, chromedp.ByQuery))
	brAwait(t, ctx, "the manager logs in", "#login-status", chromedp.Click(`#login`, chromedp.ByQuery))
	brContains(t, "manager's log-in", brText(t, ctx, "#login-status"), "logged in as Mia (acme, manager)")
	brAwait(t, ctx, "statement", "#statement-status", chromedp.Click(`#get-statement`, chromedp.ByQuery))
	brContains(t, "statement", brText(t, ctx, "#statement-status"), "statement signature verified (e2sgate merchant)")
	brContains(t, "statement line", brText(t, ctx, `#statement-orders tr[data-order="`+offerID+`"]`), "acknowledged", "430.85 EUR")
	resp, body = puDo(t, a, puClient(a, mia), "GET", "/cgi-bin/purchasing/statement", "", nil, nil)
	st, err := cms.Verify(body, cms.VerifyOptions{Registered: []*x509.Certificate{merchant}})
	if resp.StatusCode != 200 || err != nil || !bytes.Contains(st.Content, []byte(offerID)) {
		t.Fatalf("statement = %d: %v", resp.StatusCode, err)
	}

	// A new buyer without a credential makes key and certificate in the
	// page; the purchasing manager registers the certificate (POST buyers);
	// the new buyer logs in with the key the page holds.
	var newCert string
	brAwait(t, ctx, "make a credential in the page", "#new-status",
		chromedp.Navigate(a.URL+"/"),
		chromedp.WaitVisible(`#ready.ok`, chromedp.ByQuery),
		chromedp.Click(`#new summary`, chromedp.ByQuery),
		chromedp.SendKeys(`#new-name`, "Carol", chromedp.ByQuery),
		chromedp.Click(`#new-key`, chromedp.ByQuery))
	brRun(t, ctx, "the new certificate", chromedp.Value(`#new-cert`, &newCert, chromedp.ByQuery))
	blk, _ := pem.Decode([]byte(newCert))
	if blk == nil {
		t.Fatalf("the page shows no PEM certificate: %q", newCert)
	}
	carol, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || carol.Subject.CommonName != "Carol" || carol.CheckSignature(carol.SignatureAlgorithm, carol.RawTBSCertificate, carol.Signature) != nil ||
		carol.KeyUsage&x509.KeyUsageKeyAgreement == 0 || carol.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Fatalf("the page's certificate: %v\n%s", err, newCert)
	}
	brContains(t, "new credential", brText(t, ctx, "#new-status"), brFingerprint(carol))
	brRun(t, ctx, "log in before registration",
		chromedp.Click(`#login`, chromedp.ByQuery),
		chromedp.WaitVisible(`#login-status.ok, #login-status.bad`, chromedp.ByQuery))
	brContains(t, "log-in before registration", brText(t, ctx, "#login-status"), "log-in failed", "unknown_buyer",
		"ask your purchasing manager to register it")
	if resp, body := puManagerChange(t, a, mia, map[string]any{"certificate": newCert, "name": "Carol", "role": "buyer",
		"limit_cents": 50_000, "categories": []string{"documents"}}); resp.StatusCode != 200 {
		t.Fatalf("the manager registers Carol = %d %s", resp.StatusCode, body)
	}
	brAwait(t, ctx, "log in after registration", "#login-status", chromedp.Click(`#login`, chromedp.ByQuery))
	brContains(t, "Carol's log-in", brText(t, ctx, "#login-status"), "logged in as Carol (acme, buyer)", "merchant's answer signature verified")
	brContains(t, "Carol's limits", brText(t, ctx, "#buyer"), "limit 500.00 EUR", "categories documents")
	if n := brCount(t, ctx, `#catalogue button.add[data-sku="LIC-STD"]`); n != 0 {
		t.Fatal("software is not among Carol's categories, yet the page offers to add LIC-STD")
	}
}

// alterOffers changes every offer on its way from the web front to the page
// ("qty":2 becomes "qty":3 inside the signed content) until stop is called;
// altered reports whether an offer was changed.
func alterOffers(t testing.TB, ctx context.Context) (stop func(), altered *atomic.Bool) {
	t.Helper()
	altered = new(atomic.Bool)
	lctx, cancel := context.WithCancel(ctx)
	chromedp.ListenTarget(lctx, func(ev any) {
		e, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		go func() {
			ectx := cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Target)
			body, err := fetch.GetResponseBody(e.RequestID).Do(ectx)
			if err != nil {
				fetch.ContinueRequest(e.RequestID).Do(ectx)
				return
			}
			if bytes.Contains(body, []byte(`"qty":2`)) {
				body = bytes.Replace(body, []byte(`"qty":2`), []byte(`"qty":3`), 1)
				altered.Store(true)
			}
			fetch.FulfillRequest(e.RequestID, e.ResponseStatusCode).WithResponseHeaders(e.ResponseHeaders).
				WithBody(base64.StdEncoding.EncodeToString(body)).Do(ectx)
		}()
	})
	brRun(t, ctx, "intercept offers", fetch.Enable().WithPatterns([]*fetch.RequestPattern{
		{URLPattern: "*/cgi-bin/purchasing/offer", RequestStage: fetch.RequestStageResponse},
	}))
	return func() {
		brRun(t, ctx, "stop intercepting", fetch.Disable())
		cancel()
	}, altered
}

// confirmDelivery is the back office confirming an order's delivery
// through its spool (inside then tells purchasing).
func confirmDelivery(t testing.TB, a *appliance, id string) {
	t.Helper()
	conf := filepath.Join(a.dataDir(), "inside", "spool", "confirmations")
	b, _ := json.Marshal(map[string]string{"order_id": id, "delivered_at": time.Now().UTC().Format(time.RFC3339), "reference": "BO-" + id[:6]})
	if err := os.WriteFile(filepath.Join(conf, ".tmp-"+id), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(conf, ".tmp-"+id), filepath.Join(conf, id+".json")); err != nil {
		t.Fatal(err)
	}
}

func brFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
