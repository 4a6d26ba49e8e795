// Package buy is the buyer's side of the secure purchasing protocol
// (E2S §2.5, §6.2.1.1), for system-to-system buying against the
// appliance's purchasing API (compartments/purchasing/API.md); e2s buy
// calls it:
//
//	catalogue → basket → offer (merchant's signature checked against the
//	certstore) → acceptance (our SignerInfo added) → contract (merchant,
//	us, merchant, and the merchant's countersignature over ours) →
//	delivery (decrypted, verified, decompressed) → signed acknowledgement.
//
// Every request is signed with the credential's key (E2s-Signature over
// method, path, query, body digest, time and nonce); the certificate in the
// TLS handshake is only a hint.
// The wire types are the compartment's own, compartments/purchasing/api.
package buy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/client"
	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// Options are e2s buy's flags.
type Options struct {
	URL      string        // the appliance, https://host[:port]
	CACert   string        // PEM file holding the appliance's TLS certificate ("": system roots)
	Merchant string        // the merchant's partner id in the certstore
	Items    string        // the basket: SKU=QTY,...
	Card     string        // the card: "PAN MM/YY"
	CardEnv  string        // the environment variable Card came from, for messages
	MaxCents int64         // refuse an offer above this gross (0: no bound)
	Retries  int           // resend the acceptance this many times while payment or the network is unavailable
	Wait     time.Duration // how long to wait for the delivery
	Out      string        // directory for the documents
	// Config is the -config file to repeat in the follow-up commands
	// printed ("": the default file).
	Config string
}

// Session is one buyer talking to one appliance.
type Session struct {
	o        Options
	out      io.Writer
	log      *slog.Logger
	base     string
	http     *http.Client
	cred     *keystore.Credential
	fp       string
	merchant *x509.Certificate
	revoked  func(*x509.Certificate, []*x509.Certificate) error

	// backoff and poll pace the acceptance's retries and the wait for the
	// delivery (tests shorten them).
	backoff func(try int) time.Duration
	poll    time.Duration
}

// New checks the options, finds the merchant's certificate in store and
// prepares the TLS client that presents cred. Messages go to out.
func New(o Options, cred *keystore.Credential, store *certstore.Store, out io.Writer, log *slog.Logger) (*Session, error) {
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: an https URL of the appliance: %w", o.URL, client.ErrUsage)
	}
	if o.Out == "" {
		o.Out = "."
	}
	m, err := store.Get(o.Merchant)
	if err != nil {
		return nil, fmt.Errorf("merchant %s (fetch %s/cgi-bin/keyhandler/certificate, check its fingerprint, 'e2s certstore add %s FILE'): %w",
			o.Merchant, strings.TrimSuffix(o.URL, "/"), o.Merchant, err)
	}
	if m.Revocation != nil {
		return nil, fmt.Errorf("merchant %s: %w", o.Merchant, certstore.ErrRevoked)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{
		Certificate: rawChain(cred.Chain), PrivateKey: cred.Signer, Leaf: cred.Certificate(),
	}}}
	if o.CACert != "" {
		pemBytes, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate: %w", o.CACert, client.ErrBadInput)
		}
	}
	sum := sha256.Sum256(cred.Certificate().Raw)
	return &Session{
		o: o, out: out, log: log, base: strings.TrimSuffix(o.URL, "/") + "/cgi-bin/purchasing/",
		http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}},
		cred: cred, fp: hex.EncodeToString(sum[:]), merchant: m.Certificate, revoked: store.CheckRevocation,
		backoff: func(try int) time.Duration { return time.Duration(2<<try) * time.Second },
		poll:    time.Second,
	}, nil
}

func rawChain(chain []*x509.Certificate) [][]byte {
	out := make([][]byte, len(chain))
	for i, c := range chain {
		out[i] = c.Raw
	}
	return out
}

func (b *Session) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

// command spells a follow-up e2s buy with the options that reach the same
// appliance, merchant and directory, then args.
func (b *Session) command(args ...string) string {
	w := []string{"e2s buy", "-url", b.o.URL}
	if b.o.CACert != "" {
		w = append(w, "-cacert", b.o.CACert)
	}
	if b.o.Merchant != "merchant" {
		w = append(w, "-merchant", b.o.Merchant)
	}
	if b.o.Out != "." {
		w = append(w, "-out", b.o.Out)
	}
	w = append(w, args...)
	if b.o.Config != "" {
		w = append(w, "-config", b.o.Config)
	}
	return strings.Join(w, " ")
}

// FollowUp is the command that fetches and acknowledges order id's
// delivery, waiting up to 10 minutes.
func (b *Session) FollowUp(id string) string { return b.command("-order", id, "-wait", "10m") }

// sign adds the request signature (API.md "Who you are"): E2s-Signature
// over api.RequestToSign of this method, path, query, body, time and a new
// nonce, under our key; E2s-Buyer names our certificate. The TLS client
// certificate is only a hint to the merchant; this is the proof.
func (b *Session) sign(req *http.Request, body []byte) error {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	ts, n := time.Now().UTC().Format(time.RFC3339), hex.EncodeToString(nonce)
	sig, err := cms.SignHeader(api.RequestToSign(req.Method, req.URL.Path, req.URL.RawQuery, body, ts, n, b.fp), b.cred.Signer, b.cred.Certificate())
	if err != nil {
		return fmt.Errorf("sign the request: %w", err)
	}
	req.Header.Set(api.HeaderSignature, sig)
	req.Header.Set(api.HeaderBuyer, b.fp)
	req.Header.Set(api.HeaderTime, ts)
	req.Header.Set(api.HeaderNonce, n)
	return nil
}

// do sends one request, signed (sign). A non-2xx answer is an error
// naming the merchant's error code and reason.
func (b *Session) do(ctx context.Context, method, script, ctype string, body []byte) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.base+script, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if err := b.sign(req, body); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, script, err)
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
	b.log.Info("purchasing", "method", method, "script", script, "status", resp.StatusCode, "bytes", len(data))
	if resp.StatusCode/100 != 2 {
		var m api.Error
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

var skuRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseItems reads a basket, SKU=QTY,...; the same SKU twice adds up.
func ParseItems(s string) ([]api.Item, error) {
	qty := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		sku, n, ok := strings.Cut(strings.TrimSpace(f), "=")
		q, err := strconv.Atoi(n)
		if !ok || err != nil || q < 1 || !skuRE.MatchString(sku) {
			return nil, fmt.Errorf("-items %q: SKU=QTY,... with QTY ≥ 1: %w", f, client.ErrUsage)
		}
		qty[sku] += q
	}
	var items []api.Item
	for sku, q := range qty {
		items = append(items, api.Item{SKU: sku, Qty: q})
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

// Catalogue reads the private catalogue and says who we are; all prints
// every product too.
func (b *Session) Catalogue(ctx context.Context, all bool) (*api.PrivateCatalogue, error) {
	_, data, err := b.do(ctx, "GET", "private", "", nil)
	if err != nil {
		return nil, err
	}
	var cat api.PrivateCatalogue
	if err := json.Unmarshal(data, &cat); err != nil {
		return nil, fmt.Errorf("private catalogue: %w: %v", ErrBadDocument, err)
	}
	b.printf("buyer %s of %s (limit %s, categories %s)\n", cat.Buyer.Name, cat.Org.Name, money(cat.Buyer.LimitCents, cat.Currency), strings.Join(cat.Buyer.Categories, ", "))
	if !all {
		return &cat, nil
	}
	for _, p := range cat.Products {
		note := ""
		if p.ListCents != 0 && p.ListCents != p.PriceCents {
			note = " (list " + money(p.ListCents, cat.Currency) + ")"
		}
		if !p.Allowed {
			note += " — not among your categories"
		}
		b.printf("  %-10s %-36s %-10s %14s net, VAT %d%%%s\n", p.SKU, p.Name, p.Category, money(p.PriceCents, cat.Currency), p.VATPercent, note)
	}
	if cat.Terms != "" {
		b.printf("  terms: %s\n", cat.Terms)
	}
	return &cat, nil
}

// Purchase runs browse → offer → acceptance → contract and returns the
// order id (also when the acceptance failed: it is saved for -resume).
func (b *Session) Purchase(ctx context.Context) (string, error) {
	items, err := ParseItems(b.o.Items)
	if err != nil {
		return "", err
	}
	card, err := b.card()
	if err != nil {
		return "", err
	}
	// Browse: the private catalogue names us, our organisation and what we may buy.
	cat, err := b.Catalogue(ctx, false)
	if err != nil {
		return "", err
	}
	for _, it := range items {
		found := false
		for _, p := range cat.Products {
			if p.SKU == it.SKU {
				found = true
				if !p.Allowed {
					return "", fmt.Errorf("%s is not among the categories you may buy: %w", it.SKU, ErrRefused)
				}
			}
		}
		if !found {
			return "", fmt.Errorf("%s is not in the catalogue: %w", it.SKU, client.ErrUsage)
		}
	}
	basket, _ := json.Marshal(api.Basket{Items: items})

	// The merchant's signed offer (step 5): verified before anything else.
	_, offer, err := b.do(ctx, "POST", "offer", "application/json", basket)
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
	b.printf("offer %s from %s, valid until %s, signature verified (merchant %s)\n", doc.OfferID, doc.Merchant, doc.ValidUntil, b.merchant.Subject.CommonName)
	for _, l := range doc.Lines {
		b.printf("  %-10s %-36s %4d × %14s = %14s  VAT %d%%\n", l.SKU, l.Name, l.Qty, money(l.UnitCents, doc.Currency), money(l.NetCents, doc.Currency), l.VATPercent)
	}
	for _, v := range doc.VAT {
		b.printf("  VAT %2d%% on %14s: %14s\n", v.Percent, money(v.NetCents, doc.Currency), money(v.VATCents, doc.Currency))
	}
	b.printf("  net %s, gross %s\n  terms: %s\n", money(doc.NetCents, doc.Currency), money(doc.GrossCents, doc.Currency), doc.Terms)
	if b.o.MaxCents > 0 && doc.GrossCents > b.o.MaxCents {
		return "", fmt.Errorf("offer %s totals %s, above -max %s: not accepted", doc.OfferID, money(doc.GrossCents, doc.Currency), money(b.o.MaxCents, doc.Currency))
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
	return doc.OfferID, b.accept(ctx, doc.OfferID, acceptance, content, card)
}

// Resume sends a saved acceptance again: the merchant answers an offer it
// has accepted before with the same contract, and one it has not with the
// contract now; the order id is the offer id, so payment charges once.
func (b *Session) Resume(ctx context.Context, file string) (string, error) {
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
	var doc api.Offer
	if err := json.Unmarshal(s.Content, &doc); err != nil || doc.Type != api.TypeOffer {
		return "", fmt.Errorf("acceptance %s: %w: not an offer", file, client.ErrBadInput)
	}
	b.printf("sending the acceptance of offer %s (%s gross) again\n", doc.OfferID, money(doc.GrossCents, doc.Currency))
	return doc.OfferID, b.accept(ctx, doc.OfferID, acceptance, s.Content, card)
}

// accept sends the acceptance — again, up to Retries times, while payment
// or the network is unavailable — and checks the contract (step 7).
func (b *Session) accept(ctx context.Context, id string, acceptance, offerContent []byte, card api.Card) error {
	req, _ := json.Marshal(api.AcceptRequest{Acceptance: acceptance, Card: card})
	var resp *http.Response
	var contract []byte
	var err error
	for try := 0; ; try++ {
		resp, contract, err = b.do(ctx, "POST", "accept", "application/json", req)
		var he *httpError
		transient := err != nil && (!errors.As(err, &he) || he.status == http.StatusServiceUnavailable || he.status == http.StatusBadGateway)
		if !transient || try >= b.o.Retries {
			break
		}
		wait := b.backoff(try)
		b.printf("%v; sending the same acceptance again in %v (the order is charged once)\n", err, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
	if err != nil {
		return fmt.Errorf("%w\nthe acceptance is saved: '%s' sends it again (never a second charge)",
			err, b.command("-resume", filepath.Join(b.o.Out, "acceptance-"+id+".p7m")))
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
	b.printf("contract %s%s: signed by the merchant, by you and countersigned by the merchant; all verified; saved %s\n",
		id, again, filepath.Join(b.o.Out, "contract-"+id+".p7m"))
	return nil
}

func (b *Session) card() (api.Card, error) {
	v := strings.Fields(b.o.Card)
	if len(v) != 2 {
		return api.Card{}, fmt.Errorf("the card: set %s to \"PAN MM/YY\": %w", b.o.CardEnv, client.ErrUsage)
	}
	return api.Card{PAN: v[0], Expiry: v[1]}, nil
}

func (b *Session) verifyOptions(registered ...*x509.Certificate) cms.VerifyOptions {
	return cms.VerifyOptions{Registered: registered, CheckRevocation: b.revoked}
}

// checkOffer verifies the offer: one signature, the merchant's from the
// certstore; our organisation's offer to us for exactly the basket, still
// valid.
func (b *Session) checkOffer(offer []byte, items []api.Item) (*api.Offer, []byte, error) {
	s, err := cms.Verify(offer, b.verifyOptions(b.merchant))
	if err != nil {
		return nil, nil, fmt.Errorf("offer: %w", err)
	}
	if len(s.Signers) != 1 || !s.Signers[0].Certificate.Equal(b.merchant) {
		return nil, nil, fmt.Errorf("offer: %w: not signed by the merchant alone", ErrBadDocument)
	}
	var doc api.Offer
	if err := json.Unmarshal(s.Content, &doc); err != nil || doc.Type != api.TypeOffer {
		return nil, nil, fmt.Errorf("offer: %w: not an %s", ErrBadDocument, api.TypeOffer)
	}
	if doc.Buyer != b.fp {
		return nil, nil, fmt.Errorf("offer %s: %w: made out to %q, not to you", doc.OfferID, ErrBadDocument, doc.Buyer)
	}
	until, err := time.Parse(time.RFC3339, doc.ValidUntil)
	if err != nil || time.Now().After(until) {
		return nil, nil, fmt.Errorf("offer %s: %w: valid until %q", doc.OfferID, ErrBadDocument, doc.ValidUntil)
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
		return nil, nil, fmt.Errorf("offer %s: %w: lines %v, basket %v", doc.OfferID, ErrBadDocument, got, want)
	}
	return &doc, s.Content, nil
}

// checkContract verifies the contract: the offer's content byte for byte,
// signed by the merchant, by us (our certificate) and the merchant again,
// with the merchant's countersignature over our signature.
func (b *Session) checkContract(contract, offerContent []byte) error {
	me := b.cred.Certificate()
	s, err := cms.Verify(contract, b.verifyOptions(b.merchant, me))
	if err != nil {
		return fmt.Errorf("contract: %w", err)
	}
	if !bytes.Equal(s.Content, offerContent) {
		return fmt.Errorf("contract: %w: its content is not the offer", ErrBadDocument)
	}
	if len(s.Signers) != 3 || !s.Signers[0].Certificate.Equal(b.merchant) || !s.Signers[1].Certificate.Equal(me) || !s.Signers[2].Certificate.Equal(b.merchant) {
		return fmt.Errorf("contract: %w: want signatures by merchant, you, merchant", ErrBadDocument)
	}
	cs := s.Signers[1].CounterSignatures
	if len(cs) != 1 || !cs[0].Certificate.Equal(b.merchant) {
		return fmt.Errorf("contract: %w: no countersignature by the merchant over your signature", ErrBadDocument)
	}
	return nil
}

var orderIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// Receive fetches the order's delivery (waiting up to Wait for the back
// office's confirmation), opens it — decrypt, verify the merchant's
// signature, decompress — and sends the signed file acknowledgement.
func (b *Session) Receive(ctx context.Context, id string) error {
	if !orderIDRE.MatchString(id) {
		return fmt.Errorf("order id %q: 32 hex digits: %w", id, client.ErrUsage)
	}
	deadline := time.Now().Add(b.o.Wait)
	var msg []byte
	for {
		_, data, err := b.do(ctx, "GET", "delivery/"+id, "", nil)
		var he *httpError
		if err == nil {
			msg = data
			break
		}
		if !errors.As(err, &he) || he.code != "not_delivered" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.poll):
		}
	}
	_, data, err := b.do(ctx, "GET", "order/"+id, "", nil)
	if err != nil {
		return err
	}
	var order api.Order
	if err := json.Unmarshal(data, &order); err != nil {
		return fmt.Errorf("order %s: %w: %v", id, ErrBadDocument, err)
	}
	name := ""
	if order.Delivery != nil {
		name = filepath.Base(order.Delivery.FileName)
	}
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
		return fmt.Errorf("delivery of %s: %w: not signed by the merchant", id, ErrBadDocument)
	}
	if err := b.write("delivery-"+id+".p7m", msg); err != nil {
		return err
	}
	if err := b.write(name, opened.Content); err != nil {
		return err
	}
	b.printf("delivery of %s: %s, %d bytes, signed by the merchant (verified), decrypted for you: %s\n",
		id, name, len(opened.Content), filepath.Join(b.o.Out, name))
	ack, err := cms.Acknowledge(opened.SignedData, opened.Content, name, b.cred.Signer, b.cred.Chain,
		cms.AckOptions{Verify: b.verifyOptions(b.merchant)})
	if err != nil {
		return fmt.Errorf("acknowledge %s: %w", name, err)
	}
	if err := b.write("ack-"+id+".p7m", ack); err != nil {
		return err
	}
	_, data, err = b.do(ctx, "POST", "ack/"+id, "application/pkcs7-mime", ack)
	if err != nil {
		return err
	}
	var ans struct {
		Status string `json:"status"`
	}
	json.Unmarshal(data, &ans)
	b.printf("acknowledgement of %s (%d bytes) sent and accepted: order %s %s\n", name, len(opened.Content), id, ans.Status)
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

// write stores one output file under Out (0600: contracts and documents
// are the buyer's business).
func (b *Session) write(name string, data []byte) error {
	if err := os.MkdirAll(b.o.Out, 0o700); err != nil {
		return err
	}
	p := filepath.Join(b.o.Out, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
