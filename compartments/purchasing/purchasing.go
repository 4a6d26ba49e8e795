// Package purchasing is the purchasing compartment: public catalogue,
// basket pricing, the merchant's signed offer (signature made by the key
// handler, reached through the gate agent) and durable orders.
package purchasing

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/durable"
)

// Caller reaches other compartments (through the gate agent).
type Caller interface {
	Call(ctx context.Context, c *callpb.Call) (*callpb.Response, error)
}

// Product is one catalogue entry.
type Product struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"` // net
	VATPercent int    `json:"vat_percent"`
}

// Catalogue is the public catalogue.
type Catalogue struct {
	Currency string    `json:"currency"`
	Products []Product `json:"products"`
}

// DefaultCatalogue is the embedded demo catalogue.
var DefaultCatalogue = Catalogue{Currency: "EUR", Products: []Product{
	{"LIC-STD", "Standard software licence", "software", 19900, 19},
	{"LIC-PRO", "Professional software licence", "software", 49900, 19},
	{"DOC-SPEC", "Technical specification (PDF)", "documents", 4900, 7},
	{"SUP-1Y", "One year support", "services", 12000, 19},
}}

// Item is a basket line as the buyer sends it.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// Basket is what the buyer sends.
type Basket struct {
	Items []Item `json:"items"`
}

// Line is a priced basket line.
type Line struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	Qty        int    `json:"qty"`
	UnitCents  int64  `json:"unit_cents"`
	NetCents   int64  `json:"net_cents"`
	VATPercent int    `json:"vat_percent"`
}

// VATGroup is the VAT of all lines with one rate.
type VATGroup struct {
	Percent  int   `json:"percent"`
	NetCents int64 `json:"net_cents"`
	VATCents int64 `json:"vat_cents"`
}

// Priced is a priced basket.
type Priced struct {
	Currency   string     `json:"currency"`
	Lines      []Line     `json:"lines"`
	VAT        []VATGroup `json:"vat"`
	NetCents   int64      `json:"net_cents"`
	GrossCents int64      `json:"gross_cents"`
}

// Offer is the document the merchant signs.
type Offer struct {
	Type       string `json:"type"` // "e2sgate.offer.v1"
	OfferID    string `json:"offer_id"`
	Merchant   string `json:"merchant"`
	Issued     string `json:"issued"`
	ValidUntil string `json:"valid_until"`
	Terms      string `json:"terms"`
	Priced
}

// Order is what is stored for an accepted order.
type Order struct {
	OrderID string `json:"order_id"`
	Created string `json:"created"`
	User    string `json:"user,omitempty"`
	Priced
}

// Handler serves the purchasing scripts.
type Handler struct {
	log    *slog.Logger
	gate   Caller
	cat    Catalogue
	orders string
	now    func() time.Time
}

// New returns the purchasing handler storing orders under dataDir.
func New(log *slog.Logger, gate Caller, dataDir string) (*Handler, error) {
	orders := filepath.Join(dataDir, "orders")
	if err := os.MkdirAll(orders, 0o700); err != nil {
		return nil, fmt.Errorf("orders dir: %w", err)
	}
	return &Handler{log: log, gate: gate, cat: DefaultCatalogue, orders: orders, now: time.Now}, nil
}

// Handle dispatches on the registered handler name.
func (h *Handler) Handle(ctx context.Context, c *callpb.Call) (*callpb.Response, error) {
	switch c.GetScript() {
	case "catalogue":
		return protocol.JSON(200, h.cat), nil
	case "basket":
		p, resp := h.price(c.GetBody())
		if resp != nil {
			return resp, nil
		}
		return protocol.JSON(200, p), nil
	case "offer":
		return h.offer(ctx, c), nil
	case "order":
		if c.GetMethod() == "GET" {
			return h.getOrder(c.GetPathInfo()), nil
		}
		return h.order(c), nil
	}
	return protocol.Error(404, "no_handler", "no such handler"), nil
}

// maxQty bounds a line so totals cannot overflow.
const maxQty = 10000

func (h *Handler) price(body []byte) (*Priced, *callpb.Response) {
	var b Basket
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, protocol.Error(400, "bad_basket", "basket must be {\"items\":[{\"sku\":...,\"qty\":...}]}")
	}
	if len(b.Items) == 0 || len(b.Items) > 100 {
		return nil, protocol.Error(400, "bad_basket", "a basket holds 1 to 100 items")
	}
	p := &Priced{Currency: h.cat.Currency}
	vat := map[int]*VATGroup{}
	for _, it := range b.Items {
		prod, ok := h.product(it.SKU)
		if !ok {
			return nil, protocol.Error(400, "unknown_sku", "unknown sku "+safe(it.SKU))
		}
		if it.Qty < 1 || it.Qty > maxQty {
			return nil, protocol.Error(400, "bad_qty", fmt.Sprintf("qty must be 1..%d", maxQty))
		}
		net := prod.PriceCents * int64(it.Qty)
		p.Lines = append(p.Lines, Line{prod.SKU, prod.Name, it.Qty, prod.PriceCents, net, prod.VATPercent})
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

func (h *Handler) product(sku string) (Product, bool) {
	for _, p := range h.cat.Products {
		if p.SKU == sku {
			return p, true
		}
	}
	return Product{}, false
}

// offer prices the basket and has the key handler sign the offer document;
// the answer is the CMS SignedData (DER) with the document inside.
func (h *Handler) offer(ctx context.Context, c *callpb.Call) *callpb.Response {
	p, resp := h.price(c.GetBody())
	if resp != nil {
		return resp
	}
	now := h.now().UTC()
	doc := Offer{
		Type: "e2sgate.offer.v1", OfferID: newID(), Merchant: "e2sgate merchant",
		Issued: now.Format(time.RFC3339), ValidUntil: now.Add(7 * 24 * time.Hour).Format(time.RFC3339),
		Terms: "Payment within 30 days of delivery. Prices net of VAT; VAT shown by rate.", Priced: *p,
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return protocol.Error(500, "internal", "cannot encode offer")
	}
	sig, err := h.gate.Call(ctx, &callpb.Call{
		ReqId: c.GetReqId(), Script: "keyhandler/sign", Method: "POST", Body: body,
		Meta: map[string]string{"CONTENT_TYPE": "application/json"},
	})
	if err != nil {
		h.log.Error("sign offer", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(502, "sign_unavailable", "the offer could not be signed; try again")
	}
	if sig.GetStatus() != 200 {
		h.log.Error("sign offer refused", "req_id", c.GetReqId(), "status", sig.GetStatus(), "reason", sig.GetReason())
		return protocol.Error(502, "sign_refused", "the offer could not be signed")
	}
	h.log.Info("offer signed", "req_id", c.GetReqId(), "offer_id", doc.OfferID, "gross_cents", p.GrossCents)
	return &callpb.Response{Status: 200, Body: sig.GetBody(), Headers: map[string]string{
		"Content-Type":        "application/pkcs7-mime; smime-type=signed-data",
		"Content-Disposition": `attachment; filename="offer-` + doc.OfferID + `.p7m"`,
	}}
}

// order stores the priced order durably before answering 201.
func (h *Handler) order(c *callpb.Call) *callpb.Response {
	p, resp := h.price(c.GetBody())
	if resp != nil {
		return resp
	}
	o := Order{OrderID: newID(), Created: h.now().UTC().Format(time.RFC3339Nano), User: c.GetUser(), Priced: *p}
	b, err := json.Marshal(o)
	if err != nil {
		return protocol.Error(500, "internal", "cannot encode order")
	}
	if err := durable.WriteFile(filepath.Join(h.orders, o.OrderID+".json"), b, 0o600); err != nil {
		h.log.Error("store order", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the order was not stored; nothing was charged; try again")
	}
	h.log.Info("order stored", "req_id", c.GetReqId(), "order_id", o.OrderID)
	r := protocol.JSON(201, map[string]any{"order_id": o.OrderID, "gross_cents": p.GrossCents, "currency": p.Currency})
	r.Headers["Location"] = "/cgi-bin/purchasing/order/" + o.OrderID
	return r
}

var idRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (h *Handler) getOrder(pathInfo string) *callpb.Response {
	id := pathInfo
	if len(id) > 0 && id[0] == '/' {
		id = id[1:]
	}
	if !idRE.MatchString(id) {
		return protocol.Error(400, "bad_order_id", "order id is 32 hex digits")
	}
	b, err := os.ReadFile(filepath.Join(h.orders, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return protocol.Error(404, "no_order", "no such order")
	}
	if err != nil {
		return protocol.Error(500, "read_failed", "the order could not be read")
	}
	return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: b}
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
