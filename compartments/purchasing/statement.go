package purchasing

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
)

// buildStatement sums an organisation's contracted orders; VAT by rate is
// the sum of each order's VAT groups (each rounded per order, as invoiced).
func buildStatement(org *Org, orders []*Order, currency string, now time.Time) *Statement {
	st := &Statement{Type: api.TypeStatement, Org: org.ID, OrgName: org.Name, Issued: now.UTC().Format(time.RFC3339), Currency: currency, Orders: []StatementLine{}, VAT: []VATGroup{}}
	vat := map[int]*VATGroup{}
	sort.Slice(orders, func(i, j int) bool { return orders[i].Created < orders[j].Created })
	for _, o := range orders {
		l := StatementLine{OrderID: o.OrderID, Created: o.Created, Buyer: o.Buyer, BuyerName: o.BuyerName, Status: o.Status,
			NetCents: o.NetCents, VAT: o.VAT, GrossCents: o.GrossCents, Acknowledged: o.Ack != nil}
		if a := o.Authorization; a != nil && a.Approved {
			l.AuthorizedCents, l.AuthCode = o.GrossCents, a.AuthCode
		}
		if o.Capture != nil && o.Capture.Captured {
			l.CapturedCents = o.GrossCents
		}
		st.Orders = append(st.Orders, l)
		for _, g := range o.VAT {
			t := vat[g.Percent]
			if t == nil {
				t = &VATGroup{Percent: g.Percent}
				vat[g.Percent] = t
			}
			t.NetCents += g.NetCents
			t.VATCents += g.VATCents
		}
		st.NetCents += o.NetCents
		st.GrossCents += o.GrossCents
		st.AuthorizedCents += l.AuthorizedCents
		st.CapturedCents += l.CapturedCents
	}
	for _, g := range vat {
		st.VAT = append(st.VAT, *g)
	}
	sort.Slice(st.VAT, func(i, j int) bool { return st.VAT[i].Percent < st.VAT[j].Percent })
	return st
}

// statement is the signed statement of the manager's organisation.
func (h *Handler) statement(ctx context.Context, c *callpb.Call) *callpb.Response {
	b, resp := h.mustAuthenticate(c)
	if resp != nil {
		return resp
	}
	if !b.IsManager() {
		return protocol.Error(403, "not_manager", "statements are for purchasing managers")
	}
	names, err := h.db.names("order-")
	if err != nil {
		return protocol.Error(500, "read_failed", "the orders could not be read")
	}
	var orders []*Order
	for _, n := range names {
		var o Order
		if ok, err := h.db.get(n, &o); err != nil || !ok {
			h.log.Error("read order for statement", "req_id", c.GetReqId(), "record", n, "error", err)
			return protocol.Error(500, "read_failed", "the orders could not be read")
		}
		if o.Org == b.Org.ID {
			orders = append(orders, &o)
		}
	}
	st := buildStatement(b.Org, orders, h.cat.Currency, h.now())
	doc, _ := json.Marshal(st)
	der, err := h.sign(ctx, c.GetReqId(), "statement", doc)
	if err != nil {
		h.log.Error("sign statement", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(502, "sign_unavailable", "the statement could not be signed; try again")
	}
	return &callpb.Response{Status: 200, Body: der, Headers: map[string]string{
		"Content-Type":        signedDataType,
		"Content-Disposition": `attachment; filename="statement-` + b.Org.ID + `.p7m"`,
	}}
}
