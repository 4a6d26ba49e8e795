// Package purchasing is the purchasing compartment (E2S §2.5, §6.2.1.1):
// buyer organisations and their members, public and private catalogue,
// basket pricing with VAT by rate, the merchant's signed offer, the buyer's
// acceptance and the countersigned contract (all signatures by the key
// handler, reached through the gate agent), payment authorisation and
// capture (payment compartment), the order to the back office (inside),
// delivery of soft goods protected for the buyer, the signed file
// acknowledgement and statements for purchasing managers. Orders,
// contracts and acknowledgements are kept sealed at rest. API.md is the
// HTTP interface.
package purchasing

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// Caller reaches other compartments (through the gate agent).
type Caller interface {
	Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error)
}

// DefaultCatalogue is the embedded demo catalogue.
var DefaultCatalogue = Catalogue{Currency: "EUR", Products: []Product{
	{SKU: "LIC-STD", Name: "Standard software licence", Category: "software", PriceCents: 19900, VATPercent: 19},
	{SKU: "LIC-PRO", Name: "Professional software licence", Category: "software", PriceCents: 49900, VATPercent: 19},
	{SKU: "DOC-SPEC", Name: "Technical specification (PDF)", Category: "documents", PriceCents: 4900, VATPercent: 7},
	{SKU: "SUP-1Y", Name: "One year support", Category: "services", PriceCents: 12000, VATPercent: 19},
}}

// Handler serves the purchasing scripts.
type Handler struct {
	log  *slog.Logger
	gate Caller
	cat  Catalogue
	db   *store
	reg  *registry
	now  func() time.Time
	// legacy holds the first slice's unsealed orders (read only).
	legacy string

	authMu     sync.Mutex
	challenges map[string]time.Time
	sessions   map[string]session
	replay     *replayGuard // nonces of signed requests answered

	certMu   sync.Mutex
	merchant *x509.Certificate

	locks [64]sync.Mutex // by order id, see lock
}

const (
	merchantName = "e2sgate merchant"
	publicTerms  = "Payment within 30 days of delivery. Prices net of VAT; VAT shown by rate."
)

// New returns the purchasing handler keeping its records sealed under
// dataDir/sealed, the nonces of signed requests in dataDir/nonces, and
// reading the enrolment file dataDir/enrolment.json.
func New(log *slog.Logger, gate Caller, dataDir string) (*Handler, error) {
	db, err := openStore(filepath.Join(dataDir, "sealed"))
	if err != nil {
		return nil, fmt.Errorf("record store: %w", err)
	}
	h := &Handler{log: log, gate: gate, cat: DefaultCatalogue, db: db, now: time.Now, legacy: filepath.Join(dataDir, "orders"),
		reg:        &registry{path: filepath.Join(dataDir, "enrolment.json"), overrides: map[string]override{}, synced: map[string]bool{}},
		challenges: map[string]time.Time{}, sessions: map[string]session{}}
	if h.replay, err = openReplayGuard(filepath.Join(dataDir, "nonces"), maxNonces, time.Now()); err != nil {
		return nil, err
	}
	if _, err := db.get("members", &h.reg.overrides); err != nil {
		return nil, fmt.Errorf("registered members: %w", err)
	}
	if err := h.reg.load(); err != nil {
		log.Error("enrolment file refused; no organisations until it is fixed", "error", err)
	}
	return h, nil
}

// Handle answers a call and names to the gate the person it proved: the
// call's user arrives empty or as a caller's claim and is cleared;
// verifyRequest sets it once a signature checks out. The calls made for
// this call carry it (callAs), and the answer names it in
// protocol.ProvenUser, which the gate records and removes.
func (h *Handler) Handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	c.User = ""
	resp, err := h.handle(context.WithValue(ctx, callKey{}, c), c)
	if resp != nil && c.User != "" {
		if resp.Headers == nil {
			resp.Headers = map[string]string{}
		}
		resp.Headers[protocol.ProvenUser] = c.User
	}
	return resp, err
}

// callKey is the context key of the call being handled (callAs reads its
// proven user).
type callKey struct{}

// handle dispatches on the registered handler name.
func (h *Handler) handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "catalogue":
		return protocol.JSON(200, h.cat), nil
	case "basket":
		b, resp := h.authenticate(c)
		if resp != nil {
			return resp, nil
		}
		p, resp := h.price(c.GetBody(), b)
		if resp != nil {
			return resp, nil
		}
		return protocol.JSON(200, p), nil
	case "private":
		return h.private(c), nil
	case "login":
		return h.login(ctx, c), nil
	case "buyers":
		return h.buyers(ctx, c), nil
	case "offer":
		return h.offer(ctx, c), nil
	case "accept":
		return h.accept(ctx, c), nil
	case "order":
		if c.GetMethod() == "GET" {
			return h.getOrder(ctx, c), nil
		}
		return h.order(c), nil
	case "delivered":
		return h.delivered(ctx, c), nil
	case "delivery":
		return h.delivery(c), nil
	case "ack":
		return h.ack(c), nil
	case "statement":
		return h.statement(ctx, c), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

// maxQty bounds a line so totals cannot overflow.
const maxQty = 10000

// price prices a basket: at list prices, or at the buyer organisation's
// contract prices for an authenticated buyer.
func (h *Handler) price(body []byte, b *Buyer) (*Priced, *callpb.Response) {
	var bk Basket
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&bk); err != nil {
		return nil, protocol.Error(400, "bad_basket", "basket must be {\"items\":[{\"sku\":...,\"qty\":...}]}")
	}
	if len(bk.Items) == 0 || len(bk.Items) > 100 {
		return nil, protocol.Error(400, "bad_basket", "a basket holds 1 to 100 items")
	}
	p := &Priced{Currency: h.cat.Currency}
	vat := map[int]*VATGroup{}
	for _, it := range bk.Items {
		prod, ok := h.product(it.SKU)
		if !ok {
			return nil, protocol.Error(400, "unknown_sku", "unknown sku "+safe(it.SKU))
		}
		if it.Qty < 1 || it.Qty > maxQty {
			return nil, protocol.Error(400, "bad_qty", fmt.Sprintf("qty must be 1..%d", maxQty))
		}
		unit := h.unitPrice(prod, b)
		net := unit * int64(it.Qty)
		p.Lines = append(p.Lines, Line{SKU: prod.SKU, Name: prod.Name, Qty: it.Qty, UnitCents: unit, NetCents: net, VATPercent: prod.VATPercent, Category: prod.Category})
		g := vat[prod.VATPercent]
		if g == nil {
			g = &VATGroup{Percent: prod.VATPercent}
			vat[prod.VATPercent] = g
		}
		g.NetCents += net
		p.NetCents += net
	}
	for _, g := range vat {
		g.VATCents = (g.NetCents*int64(g.Percent) + 50) / 100
		p.VAT = append(p.VAT, *g)
		p.GrossCents += g.VATCents
	}
	sort.Slice(p.VAT, func(i, j int) bool { return p.VAT[i].Percent < p.VAT[j].Percent })
	p.GrossCents += p.NetCents
	return p, nil
}

func (h *Handler) unitPrice(prod Product, b *Buyer) int64 {
	if b != nil {
		if c, ok := b.Org.Prices[prod.SKU]; ok && c > 0 {
			return c
		}
	}
	return prod.PriceCents
}

func (h *Handler) product(sku string) (Product, bool) {
	for _, p := range h.cat.Products {
		if p.SKU == sku {
			return p, true
		}
	}
	return Product{}, false
}

// private is the private catalogue (E2S §2.5): the organisation's contract
// prices and terms and what this buyer may order.
func (h *Handler) private(c *callpb.Call) *callpb.Response {
	b, resp := h.mustAuthenticate(c)
	if resp != nil {
		return resp
	}
	out := PrivateCatalogue{Org: api.OrgRef{ID: b.Org.ID, Name: b.Org.Name}, Buyer: viewOf(b.Org.ID, b.Member), Currency: h.cat.Currency, Terms: h.terms(b)}
	for _, p := range h.cat.Products {
		pp := PrivateProduct{Product: p, ListCents: p.PriceCents, Allowed: b.May(p.Category)}
		pp.PriceCents = h.unitPrice(p, b)
		out.Products = append(out.Products, pp)
	}
	return protocol.JSON(200, out)
}

func (h *Handler) terms(b *Buyer) string {
	if b != nil && b.Org.Terms != "" {
		return b.Org.Terms
	}
	return publicTerms
}

// authority checks the buyer's purchasing authority as its manager set it:
// every line's category allowed, the total within the limit.
func authority(b *Buyer, p *Priced) *callpb.Response {
	for _, l := range p.Lines {
		if !b.May(l.Category) {
			return protocol.Error(403, "category", "you may not order "+safe(l.Category)+" goods")
		}
	}
	if p.GrossCents > b.LimitCents {
		return protocol.Error(402, "over_limit", fmt.Sprintf("the order total %d exceeds your limit of %d", p.GrossCents, b.LimitCents))
	}
	return nil
}

// issuedOffer is what the merchant keeps of each offer made to a buyer, to
// recognise the acceptance as exactly that offer.
type issuedOffer struct {
	OfferID    string `json:"offer_id"`
	Org        string `json:"org"`
	Buyer      string `json:"buyer"`
	ValidUntil string `json:"valid_until"`
	Content    []byte `json:"content"`   // the exact signed bytes
	Signature  []byte `json:"signature"` // the merchant's signature value
}

// offer prices the basket and has the key handler sign the offer document;
// the answer is the CMS SignedData (DER) with the document inside. An
// authenticated buyer's offer names the buyer, uses its organisation's
// prices and terms, and is kept so that its acceptance can be checked.
func (h *Handler) offer(ctx context.Context, c *callpb.Call) *callpb.Response {
	b, resp := h.authenticate(c)
	if resp != nil {
		return resp
	}
	p, resp := h.price(c.GetBody(), b)
	if resp != nil {
		return resp
	}
	now := h.now().UTC()
	doc := Offer{
		Type: api.TypeOffer, OfferID: newID(), Merchant: merchantName,
		Issued: now.Format(time.RFC3339), ValidUntil: now.Add(7 * 24 * time.Hour).Format(time.RFC3339),
		Terms: h.terms(b), Priced: *p,
	}
	if b != nil {
		if resp := authority(b, p); resp != nil {
			return resp
		}
		doc.Org, doc.Buyer, doc.BuyerName = b.Org.ID, b.Fingerprint, b.Name
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return protocol.Error(500, "internal", "cannot encode offer")
	}
	der, err := h.sign(ctx, c.GetReqId(), "offer", body)
	if err != nil {
		h.log.Error("sign offer", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(502, "sign_unavailable", "the offer could not be signed; try again")
	}
	if b != nil {
		cert, err := h.merchantCert(ctx, c.GetReqId())
		if err != nil {
			return protocol.Error(503, "sign_unavailable", "the merchant certificate is not available; try again")
		}
		signed, err := cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{cert}})
		if err != nil { // the key handler's key may have been rotated since we asked
			h.forgetMerchant(cert)
			if cert, err = h.merchantCert(ctx, c.GetReqId()); err == nil {
				signed, err = cms.Verify(der, cms.VerifyOptions{Registered: []*x509.Certificate{cert}})
			}
		}
		if err != nil || len(signed.Signers) != 1 || !bytes.Equal(signed.Content, body) {
			h.log.Error("key handler's offer signature does not verify", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(502, "sign_refused", "the offer could not be signed")
		}
		io := issuedOffer{OfferID: doc.OfferID, Org: doc.Org, Buyer: doc.Buyer, ValidUntil: doc.ValidUntil, Content: body, Signature: signed.Signers[0].Signature}
		if err := h.db.put("offer-"+doc.OfferID, io); err != nil {
			h.log.Error("store offer", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(503, "store_failed", "the offer was not stored; try again")
		}
	}
	h.log.Info("offer signed", "req_id", c.GetReqId(), "offer_id", doc.OfferID, "org", doc.Org, "gross_cents", p.GrossCents)
	return &callpb.Response{Status: 200, Body: der, Headers: map[string]string{
		"Content-Type":        signedDataType,
		"Content-Disposition": `attachment; filename="offer-` + doc.OfferID + `.p7m"`,
	}}
}

// order stores an anonymous priced order (the first slice's unsigned
// order) sealed and durably before answering 201.
func (h *Handler) order(c *callpb.Call) *callpb.Response {
	p, resp := h.price(c.GetBody(), nil)
	if resp != nil {
		return resp
	}
	o := Order{OrderID: newID(), Created: h.now().UTC().Format(time.RFC3339Nano), Status: StatusStored, Priced: *p} // anonymous: outside's user is no proof
	if err := h.db.put("order-"+o.OrderID, o); err != nil {
		h.log.Error("store order", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the order was not stored; nothing was charged; try again")
	}
	h.log.Info("order stored", "req_id", c.GetReqId(), "order_id", o.OrderID)
	r := protocol.JSON(201, map[string]any{"order_id": o.OrderID, "gross_cents": p.GrossCents, "currency": p.Currency})
	r.Headers["Location"] = "/cgi-bin/purchasing/order/" + o.OrderID
	return r
}

var (
	idRE    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	orgIDRE = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
)

// pathID is the 32-hex id in a call's PATH_INFO.
func pathID(c *callpb.Call) (string, *callpb.Response) {
	id := strings.TrimPrefix(c.GetPathInfo(), "/")
	if !idRE.MatchString(id) {
		return "", protocol.Error(400, "bad_order_id", "order id is 32 hex digits")
	}
	return id, nil
}

// loadOrder reads an order; a nil order with a nil answer does not exist.
func (h *Handler) loadOrder(reqID, id string) (*Order, *callpb.Response) {
	var o Order
	ok, err := h.db.get("order-"+id, &o)
	if err != nil {
		h.log.Error("read order", "req_id", reqID, "order_id", id, "error", err)
		return nil, protocol.Error(500, "read_failed", "the order could not be read")
	}
	if !ok {
		// An order of the first slice, stored in clear before records were
		// sealed: still readable by its id.
		b, err := os.ReadFile(filepath.Join(h.legacy, id+".json"))
		if err != nil || json.Unmarshal(b, &o) != nil || o.OrderID != id {
			return nil, protocol.Error(404, "no_order", "no such order")
		}
		o.Status, o.Org = StatusStored, ""
	}
	return &o, nil
}

// getOrder shows an order to its buyer or a manager of its organisation;
// an anonymous order to whoever has its id.
func (h *Handler) getOrder(ctx context.Context, c *callpb.Call) *callpb.Response {
	id, resp := pathID(c)
	if resp != nil {
		return resp
	}
	o, resp := h.loadOrder(c.GetReqId(), id)
	if resp != nil {
		return resp
	}
	if o.Org != "" {
		b, resp := h.mustAuthenticate(c)
		if resp != nil {
			return resp
		}
		if !mayRead(b, o) {
			return protocol.Error(404, "no_order", "no such order")
		}
		if o.BackOffice == "pending" && o.Authorization != nil {
			unlock := h.lock(o.OrderID)
			if cur, resp := h.loadOrder(c.GetReqId(), o.OrderID); resp == nil && cur.BackOffice == "pending" {
				h.handToBackOffice(ctx, c.GetReqId(), cur)
				o = cur
			}
			unlock()
		}
	}
	return protocol.JSON(200, orderView(o))
}

func mayRead(b *Buyer, o *Order) bool {
	return b.Fingerprint == o.Buyer || (b.IsManager() && b.Org.ID == o.Org)
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// safe shortens and quotes client text before it goes into an answer.
func safe(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	return fmt.Sprintf("%q", s)
}
