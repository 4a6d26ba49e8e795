package main

// e2s buy: the secure purchasing protocol (E2S §2.5, §6.2.1.1) from the
// command line, for system-to-system buying against the appliance's
// purchasing API (compartments/purchasing/API.md):
//
//	catalogue → basket → offer (merchant's signature checked against the
//	certstore) → acceptance (our SignerInfo added) → contract (merchant,
//	us, merchant, and the merchant's countersignature over ours) →
//	delivery (decrypted, verified, decompressed) → signed acknowledgement.
//
// Every request presents the credential's certificate in the TLS handshake;
// every POST also carries the E2s-Signature header over its exact body.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/internal/certstore"
	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/cms"
	"github.com/e2sgate/e2sgate/internal/keystore"
)

var (
	// errRefused: the merchant refused a step (the message says which and why).
	errRefused = errors.New("refused by the merchant")
	// errBadDocument: a document from the merchant does not check out.
	errBadDocument = errors.New("document from the merchant does not check out")
)

func cmdBuy(fs *flag.FlagSet) func(*env, []string) error {
	o := buyOptions{}
	fs.StringVar(&o.url, "url", os.Getenv("E2S_URL"), "the appliance's `URL` (default $E2S_URL)")
	fs.StringVar(&o.caCert, "cacert", "", "trust the appliance's TLS certificate in this PEM `file` (default: system roots)")
	fs.StringVar(&o.merchant, "merchant", "merchant", "the merchant's partner `id` in the certstore")
	fs.StringVar(&o.items, "items", "", "the basket: `SKU=QTY,...`")
	fs.BoolVar(&o.list, "list", false, "print your organisation's catalogue (prices, what you may buy) and stop")
	fs.StringVar(&o.cardEnv, "card-env", "E2S_CARD", "environment `variable` holding the card: \"PAN MM/YY\"")
	fs.Int64Var(&o.maxCents, "max", 0, "refuse an offer above this many `cents` gross (0: no bound)")
	fs.StringVar(&o.order, "order", "", "continue with this accepted `order`: fetch and open the delivery, acknowledge it")
	fs.StringVar(&o.resume, "resume", "", "send the saved acceptance `file` (acceptance-ID.p7m) again: after a failure, the same order, never a second charge")
	fs.IntVar(&o.retries, "retries", 3, "resend the acceptance this many `times` when payment or the network is unavailable")
	fs.DurationVar(&o.wait, "wait", 0, "how long to wait for the delivery (0: do not wait)")
	fs.StringVar(&o.out, "out", ".", "`directory` for offer, contract, delivery, document and acknowledgement")
	return func(e *env, _ []string) error {
		if o.url == "" {
			return fmt.Errorf("-url is required: %w", client.ErrUsage)
		}
		n := 0
		if o.list {
			n++
		}
		for _, v := range []string{o.items, o.order, o.resume} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("give one of -list, -items (a new purchase), -resume (its acceptance again) or -order (its delivery): %w", client.ErrUsage)
		}
		c, err := e.client()
		if err != nil {
			return err
		}
		b, err := newBuyer(e, c, o)
		if err != nil {
			return err
		}
		if o.list {
			_, err := b.catalogue(true)
			return err
		}
		if o.order != "" {
			return b.receive(o.order)
		}
		var id string
		if o.resume != "" {
			id, err = b.resume(o.resume)
		} else {
			id, err = b.purchase()
		}
		if err != nil {
			return err
		}
		if o.wait == 0 {
			e.printf("delivery follows once the merchant's back office confirms it: e2s buy -url %s -order %s -wait 10m\n", o.url, id)
			return nil
		}
		return b.receive(id)
	}
}

type buyOptions struct {
	url, caCert, merchant, items, cardEnv, order, resume, out string
	list                                                      bool
	maxCents                                                  int64
	retries                                                   int
	wait                                                      time.Duration
}

// buySession is one buyer talking to one appliance.
type buySession struct {
	e        *env
	o        buyOptions
	base     string
	http     *http.Client
	cred     *keystore.Credential
	fp       string
	merchant *x509.Certificate
	revoked  func(*x509.Certificate, []*x509.Certificate) error
}

func newBuyer(e *env, c *client.Client, o buyOptions) (_ *buySession, err error) {
	u, err := url.Parse(o.url)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: an https URL of the appliance: %w", o.url, client.ErrUsage)
	}
	cred, err := c.Credential() // the client closes its keystore (a token logs out) when e2s ends
	if err != nil {
		return nil, err
	}
	store, err := certstore.Open(c.Config().Certstore.Dir)
	if err != nil {
		return nil, fmt.Errorf("open certstore: %w", err)
	}
	m, err := store.Get(o.merchant)
	if err != nil {
		return nil, fmt.Errorf("merchant %s (fetch %s/cgi-bin/keyhandler/certificate, check its fingerprint, 'e2s certstore add %s FILE'): %w",
			o.merchant, strings.TrimSuffix(o.url, "/"), o.merchant, err)
	}
	if m.Revocation != nil {
		return nil, fmt.Errorf("merchant %s: %w", o.merchant, certstore.ErrRevoked)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{
		Certificate: rawChain(cred.Chain), PrivateKey: cred.Signer, Leaf: cred.Certificate(),
	}}}
	if o.caCert != "" {
		pemBytes, err := os.ReadFile(o.caCert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate: %w", o.caCert, client.ErrBadInput)
		}
	}
	sum := sha256.Sum256(cred.Certificate().Raw)
	return &buySession{
		e: e, o: o, base: strings.TrimSuffix(o.url, "/") + "/cgi-bin/purchasing/",
		http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}},
		cred: cred, fp: hex.EncodeToString(sum[:]), merchant: m.Certificate, revoked: store.CheckRevocation,
	}, nil
}

func rawChain(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

// do sends one request; POST bodies are signed in the E2s-Signature header.
// A non-2xx answer is an error naming the merchant's error code.
func (b *buySession) do(method, script, ctype string, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(b.e.ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.base+script, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
		sig, err := cms.SignHeader(body, b.cred.Signer, b.cred.Certificate())
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set(cms.HeaderSignature, sig)
		req.Header.Set("E2s-Buyer", b.fp)
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, script, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, script, err)
	}
	b.e.log.Info("purchasing", "method", method, "script", script, "status", resp.StatusCode, "bytes", len(data))
	if resp.StatusCode/100 != 2 {
		var m struct{ Error, Message, Reason string }
		json.Unmarshal(data, &m)
		if m.Error == "" {
			m.Error = http.StatusText(resp.StatusCode)
		}
		if r := resp.Header.Get("X-E2s-Reason"); r != "" && m.Reason == "" {
			m.Reason = r
		}
		msg := fmt.Sprintf("%s %s: %d %s", method, script, resp.StatusCode, m.Error)
		if m.Message != "" {
			msg += ": " + m.Message
		}
		if m.Reason != "" {
			msg += " (" + m.Reason + ")"
		}
		return resp, data, &httpError{status: resp.StatusCode, code: m.Error, msg: msg}
	}
	return resp, data, nil
}

type httpError struct {
	status int
	code   string
	msg    string
}

func (h *httpError) Error() string { return h.msg }
func (h *httpError) Unwrap() error { return errRefused }

// offerDoc is the merchant's offer (and so the contract's content).
type offerDoc struct {
	Type       string `json:"type"`
	OfferID    string `json:"offer_id"`
	Merchant   string `json:"merchant"`
	Issued     string `json:"issued"`
	ValidUntil string `json:"valid_until"`
	Terms      string `json:"terms"`
	Org        string `json:"org"`
	Buyer      string `json:"buyer"`
	Currency   string `json:"currency"`
	Lines      []struct {
		SKU        string `json:"sku"`
		Name       string `json:"name"`
		Qty        int    `json:"qty"`
		UnitCents  int64  `json:"unit_cents"`
		NetCents   int64  `json:"net_cents"`
		VATPercent int    `json:"vat_percent"`
	} `json:"lines"`
	VAT []struct {
		Percent  int   `json:"percent"`
		NetCents int64 `json:"net_cents"`
		VATCents int64 `json:"vat_cents"`
	} `json:"vat"`
	NetCents   int64 `json:"net_cents"`
	GrossCents int64 `json:"gross_cents"`
}

type basketItem struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

var skuRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func parseItems(s string) ([]basketItem, error) {
	qty := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		sku, n, ok := strings.Cut(strings.TrimSpace(f), "=")
		q, err := strconv.Atoi(n)
		if !ok || err != nil || q < 1 || !skuRE.MatchString(sku) {
			return nil, fmt.Errorf("-items %q: SKU=QTY,... with QTY ≥ 1: %w", f, client.ErrUsage)
		}
		qty[sku] += q
	}
	var items []basketItem
	for sku, q := range qty {
		items = append(items, basketItem{sku, q})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].SKU < items[j].SKU })
	return items, nil
}

func money(cents int64, cur string) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, cents/100, cents%100, cur)
}

// privateCatalogue is the organisation's catalogue as GET private gives it.
type privateCatalogue struct {
	Org   struct{ ID, Name string } `json:"org"`
	Buyer struct {
		Name       string   `json:"name"`
		Role       string   `json:"role"`
		LimitCents int64    `json:"limit_cents"`
		Categories []string `json:"categories"`
	} `json:"buyer"`
	Currency string `json:"currency"`
	Terms    string `json:"terms"`
	Products []struct {
		SKU        string `json:"sku"`
		Name       string `json:"name"`
		Category   string `json:"category"`
		PriceCents int64  `json:"price_cents"`
		ListCents  int64  `json:"list_cents"`
		VATPercent int    `json:"vat_percent"`
		Allowed    *bool  `json:"allowed"`
	} `json:"products"`
}

// catalogue reads the private catalogue and says who we are; all prints
// every product too.
func (b *buySession) catalogue(all bool) (*privateCatalogue, error) {
	_, data, err := b.do("GET", "private", "", nil)
	if err != nil {
		return nil, err
	}
	var cat privateCatalogue
	if err := json.Unmarshal(data, &cat); err != nil {
		return nil, fmt.Errorf("private catalogue: %w: %v", errBadDocument, err)
	}
	b.e.printf("buyer %s of %s (limit %s, categories %s)\n", cat.Buyer.Name, cat.Org.Name, money(cat.Buyer.LimitCents, cat.Currency), strings.Join(cat.Buyer.Categories, ", "))
	if !all {
		return &cat, nil
	}
	for _, p := range cat.Products {
		note := ""
		if p.ListCents != 0 && p.ListCents != p.PriceCents {
			note = " (list " + money(p.ListCents, cat.Currency) + ")"
		}
		if p.Allowed != nil && !*p.Allowed {
			note += " — not among your categories"
		}
		b.e.printf("  %-10s %-36s %-10s %14s net, VAT %d%%%s\n", p.SKU, p.Name, p.Category, money(p.PriceCents, cat.Currency), p.VATPercent, note)
	}
	if cat.Terms != "" {
		b.e.printf("  terms: %s\n", cat.Terms)
	}
	return &cat, nil
}

// purchase runs browse → offer → acceptance → contract and returns the
// order id (also when the acceptance failed: it is saved for -resume).
func (b *buySession) purchase() (string, error) {
	items, err := parseItems(b.o.items)
	if err != nil {
		return "", err
	}
	card, err := b.card()
	if err != nil {
		return "", err
	}
	// Browse: the private catalogue names us, our organisation and what we may buy.
	cat, err := b.catalogue(false)
	if err != nil {
		return "", err
	}
	for _, it := range items {
		found := false
		for _, p := range cat.Products {
			if p.SKU == it.SKU {
				found = true
				if p.Allowed != nil && !*p.Allowed {
					return "", fmt.Errorf("%s is not among the categories you may buy: %w", it.SKU, errRefused)
				}
			}
		}
		if !found {
			return "", fmt.Errorf("%s is not in the catalogue: %w", it.SKU, client.ErrUsage)
		}
	}
	basket, _ := json.Marshal(map[string]any{"items": items})

	// The merchant's signed offer (step 5): verified before anything else.
	_, offer, err := b.do("POST", "offer", "application/json", basket)
	if err != nil {
		return "", err
	}
	doc, content, err := b.checkOffer(offer, items)
	if err != nil {
		return "", err
	}
	if err := b.write("offer-"+doc.OfferID+".p7m", offer); err != nil {
		return "", err
	}
	b.e.printf("offer %s from %s, valid until %s, signature verified (merchant %s)\n", doc.OfferID, doc.Merchant, doc.ValidUntil, b.merchant.Subject.CommonName)
	for _, l := range doc.Lines {
		b.e.printf("  %-10s %-36s %4d × %14s = %14s  VAT %d%%\n", l.SKU, l.Name, l.Qty, money(l.UnitCents, doc.Currency), money(l.NetCents, doc.Currency), l.VATPercent)
	}
	for _, v := range doc.VAT {
		b.e.printf("  VAT %2d%% on %14s: %14s\n", v.Percent, money(v.NetCents, doc.Currency), money(v.VATCents, doc.Currency))
	}
	b.e.printf("  net %s, gross %s\n  terms: %s\n", money(doc.NetCents, doc.Currency), money(doc.GrossCents, doc.Currency), doc.Terms)
	if b.o.maxCents > 0 && doc.GrossCents > b.o.maxCents {
		return "", fmt.Errorf("offer %s totals %s, above -max %s: not accepted", doc.OfferID, money(doc.GrossCents, doc.Currency), money(b.o.maxCents, doc.Currency))
	}

	// Our acceptance (step 6): our SignerInfo over the same content, kept
	// so that it can be sent again (-resume) if this run fails.
	acceptance, err := cms.AddSigner(offer, nil, b.cred.Signer, b.cred.Chain, cms.SignOptions{})
	if err != nil {
		return "", fmt.Errorf("sign the acceptance: %w", err)
	}
	if err := b.write("acceptance-"+doc.OfferID+".p7m", acceptance); err != nil {
		return "", err
	}
	return doc.OfferID, b.accept(doc.OfferID, acceptance, content, card)
}

// resume sends a saved acceptance again: the merchant answers an offer it
// has accepted before with the same contract, and one it has not with the
// contract now; the order id is the offer id, so payment charges once.
func (b *buySession) resume(file string) (string, error) {
	acceptance, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	card, err := b.card()
	if err != nil {
		return "", err
	}
	s, err := cms.Verify(acceptance, b.verifyOptions(b.merchant, b.cred.Certificate()))
	if err != nil {
		return "", fmt.Errorf("acceptance %s: %w", file, err)
	}
	if len(s.Signers) != 2 || !s.Signers[0].Certificate.Equal(b.merchant) || !s.Signers[1].Certificate.Equal(b.cred.Certificate()) {
		return "", fmt.Errorf("acceptance %s: %w: want the merchant's offer signature and yours", file, client.ErrBadInput)
	}
	var doc offerDoc
	if err := json.Unmarshal(s.Content, &doc); err != nil || doc.Type != "e2sgate.offer.v1" {
		return "", fmt.Errorf("acceptance %s: %w: not an offer", file, client.ErrBadInput)
	}
	b.e.printf("sending the acceptance of offer %s (%s gross) again\n", doc.OfferID, money(doc.GrossCents, doc.Currency))
	return doc.OfferID, b.accept(doc.OfferID, acceptance, s.Content, card)
}

// accept sends the acceptance — again, up to -retries times, while payment
// or the network is unavailable — and checks the contract (step 7).
func (b *buySession) accept(id string, acceptance, offerContent []byte, card map[string]string) error {
	req, _ := json.Marshal(map[string]any{"acceptance": acceptance, "card": card})
	var resp *http.Response
	var contract []byte
	var err error
	for try := 0; ; try++ {
		resp, contract, err = b.do("POST", "accept", "application/json", req)
		var he *httpError
		transient := err != nil && (!errors.As(err, &he) || he.status == http.StatusServiceUnavailable || he.status == http.StatusBadGateway)
		if !transient || try >= b.o.retries {
			break
		}
		wait := time.Duration(2<<try) * time.Second
		b.e.printf("%v; sending the same acceptance again in %v (the order is charged once)\n", err, wait)
		select {
		case <-b.e.ctx.Done():
			return b.e.ctx.Err()
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fmt.Errorf("%w\nthe acceptance is saved: 'e2s buy -resume %s' sends it again (never a second charge)",
			err, filepath.Join(b.o.out, "acceptance-"+id+".p7m"))
	}
	// The contract: merchant, us, merchant, over exactly the offer.
	if err := b.checkContract(contract, offerContent); err != nil {
		return err
	}
	if err := b.write("contract-"+id+".p7m", contract); err != nil {
		return err
	}
	again := ""
	if resp.StatusCode == http.StatusOK {
		again = " (accepted before: the same contract)"
	}
	b.e.printf("contract %s%s: signed by the merchant, by you and countersigned by the merchant; all verified; saved %s\n",
		id, again, filepath.Join(b.o.out, "contract-"+id+".p7m"))
	return nil
}

func (b *buySession) card() (map[string]string, error) {
	v := strings.Fields(os.Getenv(b.o.cardEnv))
	if len(v) != 2 {
		return nil, fmt.Errorf("the card: set %s to \"PAN MM/YY\": %w", b.o.cardEnv, client.ErrUsage)
	}
	return map[string]string{"pan": v[0], "expiry": v[1]}, nil
}

func (b *buySession) verifyOptions(registered ...*x509.Certificate) cms.VerifyOptions {
	return cms.VerifyOptions{Registered: registered, CheckRevocation: b.revoked}
}

// checkOffer verifies the offer: one signature, the merchant's from the
// certstore; our organisation's offer to us for exactly the basket, still
// valid.
func (b *buySession) checkOffer(offer []byte, items []basketItem) (*offerDoc, []byte, error) {
	s, err := cms.Verify(offer, b.verifyOptions(b.merchant))
	if err != nil {
		return nil, nil, fmt.Errorf("offer: %w", err)
	}
	if len(s.Signers) != 1 || !s.Signers[0].Certificate.Equal(b.merchant) {
		return nil, nil, fmt.Errorf("offer: %w: not signed by the merchant alone", errBadDocument)
	}
	var doc offerDoc
	if err := json.Unmarshal(s.Content, &doc); err != nil || doc.Type != "e2sgate.offer.v1" {
		return nil, nil, fmt.Errorf("offer: %w: not an e2sgate.offer.v1", errBadDocument)
	}
	if doc.Buyer != b.fp {
		return nil, nil, fmt.Errorf("offer %s: %w: made out to %q, not to you", doc.OfferID, errBadDocument, doc.Buyer)
	}
	until, err := time.Parse(time.RFC3339, doc.ValidUntil)
	if err != nil || time.Now().After(until) {
		return nil, nil, fmt.Errorf("offer %s: %w: valid until %q", doc.OfferID, errBadDocument, doc.ValidUntil)
	}
	got := map[string]int{}
	for _, l := range doc.Lines {
		got[l.SKU] += l.Qty
	}
	want := map[string]int{}
	for _, it := range items {
		want[it.SKU] = it.Qty
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return nil, nil, fmt.Errorf("offer %s: %w: lines %v, basket %v", doc.OfferID, errBadDocument, got, want)
	}
	return &doc, s.Content, nil
}

// checkContract verifies the contract: the offer's content byte for byte,
// signed by the merchant, by us (our certificate) and the merchant again,
// with the merchant's countersignature over our signature.
func (b *buySession) checkContract(contract, offerContent []byte) error {
	me := b.cred.Certificate()
	s, err := cms.Verify(contract, b.verifyOptions(b.merchant, me))
	if err != nil {
		return fmt.Errorf("contract: %w", err)
	}
	if !bytes.Equal(s.Content, offerContent) {
		return fmt.Errorf("contract: %w: its content is not the offer", errBadDocument)
	}
	if len(s.Signers) != 3 || !s.Signers[0].Certificate.Equal(b.merchant) || !s.Signers[1].Certificate.Equal(me) || !s.Signers[2].Certificate.Equal(b.merchant) {
		return fmt.Errorf("contract: %w: want signatures by merchant, you, merchant", errBadDocument)
	}
	cs := s.Signers[1].CounterSignatures
	if len(cs) != 1 || !cs[0].Certificate.Equal(b.merchant) {
		return fmt.Errorf("contract: %w: no countersignature by the merchant over your signature", errBadDocument)
	}
	return nil
}

// receive fetches the order's delivery (waiting up to -wait for the back
// office's confirmation), opens it — decrypt, verify the merchant's
// signature, decompress — and sends the signed file acknowledgement.
func (b *buySession) receive(id string) error {
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		return fmt.Errorf("order id %q: 32 hex digits: %w", id, client.ErrUsage)
	}
	deadline := time.Now().Add(b.o.wait)
	var msg []byte
	for {
		_, data, err := b.do("GET", "delivery/"+id, "", nil)
		var he *httpError
		if err == nil {
			msg = data
			break
		}
		if !errors.As(err, &he) || he.code != "not_delivered" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-b.e.ctx.Done():
			return b.e.ctx.Err()
		case <-time.After(time.Second):
		}
	}
	_, data, err := b.do("GET", "order/"+id, "", nil)
	if err != nil {
		return err
	}
	var order struct {
		Status   string `json:"status"`
		Delivery struct {
			FileName string `json:"file_name"`
		} `json:"delivery"`
	}
	if err := json.Unmarshal(data, &order); err != nil {
		return fmt.Errorf("order %s: %w: %v", id, errBadDocument, err)
	}
	name := filepath.Base(order.Delivery.FileName)
	if name == "." || name == "/" || name == "" || strings.HasPrefix(name, ".") {
		name = "delivery-" + id + ".bin"
	}
	key, err := decryptionKey(b.cred)
	if err != nil {
		return err
	}
	opened, err := cms.Open(msg, b.cred.Certificate(), key, cms.OpenOptions{Verify: b.verifyOptions(b.merchant)})
	if err != nil {
		return fmt.Errorf("open the delivery of %s: %w", id, err)
	}
	if len(opened.Signed.Signers) != 1 || !opened.Signed.Signers[0].Certificate.Equal(b.merchant) {
		return fmt.Errorf("delivery of %s: %w: not signed by the merchant", id, errBadDocument)
	}
	if err := b.write("delivery-"+id+".p7m", msg); err != nil {
		return err
	}
	if err := b.write(name, opened.Content); err != nil {
		return err
	}
	b.e.printf("delivery of %s: %s, %d bytes, signed by the merchant (verified), decrypted for you: %s\n",
		id, name, len(opened.Content), filepath.Join(b.o.out, name))
	ack, err := cms.Acknowledge(opened.SignedData, opened.Content, name, b.cred.Signer, b.cred.Chain,
		cms.AckOptions{Verify: b.verifyOptions(b.merchant)})
	if err != nil {
		return fmt.Errorf("acknowledge %s: %w", name, err)
	}
	if err := b.write("ack-"+id+".p7m", ack); err != nil {
		return err
	}
	_, data, err = b.do("POST", "ack/"+id, "application/pkcs7-mime", ack)
	if err != nil {
		return err
	}
	var ans struct {
		Status string `json:"status"`
	}
	json.Unmarshal(data, &ans)
	b.e.printf("acknowledgement of %s (%d bytes) sent and accepted: order %s %s\n", name, len(opened.Content), id, ans.Status)
	return nil
}

// decryptionKey is the credential's key as cms.Open wants it: the ECDSA
// key itself for ECDH, a crypto.Decrypter for RSA.
func decryptionKey(cred *keystore.Credential) (crypto.PrivateKey, error) {
	if _, ok := cred.Signer.Public().(*ecdsa.PublicKey); ok {
		return cred.Signer, nil
	}
	return cred.Decrypter()
}

// write stores one output file under -out (0600: contracts and documents
// are the buyer's business).
func (b *buySession) write(name string, data []byte) error {
	if err := os.MkdirAll(b.o.out, 0o700); err != nil {
		return err
	}
	p := filepath.Join(b.o.out, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
