package purchasing

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// document is the soft goods of an order: one text file with a licence key
// per licensed unit and the documents ordered.
func document(o *Order) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "e2sgate delivery\norder: %s\nlicensee: %s (%s)\ncontract: SHA-256 %x\n\n", o.OrderID, o.Org, o.BuyerName, sha256.Sum256(o.Contract))
	for _, l := range o.Lines {
		fmt.Fprintf(&b, "%s  %s  x%d\n", l.SKU, l.Name, l.Qty)
		if l.Category != "software" {
			continue
		}
		for i := 0; i < l.Qty && i < 100; i++ {
			m := hmac.New(sha256.New, o.Contract)
			fmt.Fprintf(m, "%s/%d", l.SKU, i)
			k := strings.ToUpper(hex.EncodeToString(m.Sum(nil))[:20])
			fmt.Fprintf(&b, "  licence key %d: %s-%s-%s-%s-%s\n", i+1, k[0:4], k[4:8], k[8:12], k[12:16], k[16:20])
		}
	}
	return []byte(b.String())
}

// delivered is the back office's confirmation (through inside): the goods
// are protected for the buyer and kept with the order, then payment
// captures. Idempotent: a repeat delivers nothing twice and captures only
// what is not captured.
func (h *Handler) delivered(ctx context.Context, c *callpb.Call) *callpb.Response {
	var req struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(c.GetBody(), &req); err != nil || !idRE.MatchString(req.OrderID) {
		return protocol.Error(400, "bad_order_id", `want {"order_id":"<32 hex>"}`)
	}
	unlock := h.lock(req.OrderID)
	defer unlock()
	o, resp := h.loadOrder(c.GetReqId(), req.OrderID)
	if resp != nil {
		return resp
	}
	if o.Org == "" || o.Authorization == nil || !o.Authorization.Approved {
		return protocol.Error(409, "not_deliverable", "only an accepted, authorised order is delivered")
	}
	now := h.now().UTC().Format(time.RFC3339)
	if o.Delivery == nil {
		b := h.lookup(o.Buyer)
		if b == nil {
			return protocol.Error(409, "unknown_buyer", "the buyer of this order is no longer registered")
		}
		doc := document(o)
		body, _ := json.Marshal(map[string]any{"content": doc,
			"recipient": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Cert.Raw}))})
		r, err := h.call(ctx, c.GetReqId(), "keyhandler/protect", body)
		if err != nil || r.GetStatus() != 200 {
			h.log.Error("protect delivery", "req_id", c.GetReqId(), "order_id", o.OrderID, "error", err, "status", r.GetStatus())
			return protocol.Error(502, "protect_unavailable", "the delivery could not be protected; try again")
		}
		var p struct {
			Message    []byte `json:"message"`
			SignedData []byte `json:"signed_data"`
		}
		if err := json.Unmarshal(r.GetBody(), &p); err != nil || len(p.Message) == 0 || len(p.SignedData) == 0 {
			return protocol.Error(502, "protect_unavailable", "the delivery could not be protected")
		}
		o.Delivery = &Delivery{FileName: "order-" + o.OrderID + ".txt", Content: doc, SignedData: p.SignedData, Message: p.Message, At: now}
		o.Status = StatusDelivered
		if err := h.db.put("order-"+o.OrderID, o); err != nil {
			h.log.Error("store delivery", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(503, "store_failed", "the delivery was not stored; try again")
		}
		h.log.Info("delivered", "req_id", c.GetReqId(), "order_id", o.OrderID, "bytes", len(doc))
	}
	if o.Capture == nil || !o.Capture.Captured {
		body, _ := json.Marshal(map[string]string{"order_id": o.OrderID})
		r, err := h.call(ctx, c.GetReqId(), "payment/capture", body)
		cp := &Capture{At: now}
		switch {
		case err != nil:
			cp.Detail = "payment unavailable"
		case r.GetStatus() != 200:
			cp.Detail = fmt.Sprintf("payment answered %d", r.GetStatus())
		default:
			var ans struct {
				Captured *bool `json:"captured"`
				Approved *bool `json:"approved"`
			}
			json.Unmarshal(r.GetBody(), &ans)
			cp.Captured = (ans.Captured == nil || *ans.Captured) && (ans.Approved == nil || *ans.Approved)
			if !cp.Captured {
				cp.Detail = "payment refused the capture"
			}
		}
		o.Capture = cp
		if err := h.db.put("order-"+o.OrderID, o); err != nil {
			h.log.Error("store capture", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(503, "store_failed", "the capture was not recorded; try again")
		}
		if !cp.Captured {
			h.log.Warn("capture failed", "req_id", c.GetReqId(), "order_id", o.OrderID, "detail", cp.Detail)
		}
		if err != nil || r.GetStatus() != 200 {
			// Payment did not decide: the back office's confirmation is
			// sent again (inside retries until 2xx), and so is the capture.
			return protocol.Error(503, "capture_pending", "delivered; the capture is retried")
		}
	}
	return protocol.JSON(200, map[string]any{"order_id": o.OrderID, "status": o.Status, "captured": o.Capture.Captured})
}

// delivery hands the protected goods to the order's buyer.
func (h *Handler) delivery(c *callpb.Call) *callpb.Response {
	id, resp := pathID(c)
	if resp != nil {
		return resp
	}
	b, resp := h.mustAuthenticate(c)
	if resp != nil {
		return resp
	}
	o, resp := h.loadOrder(c.GetReqId(), id)
	if resp != nil {
		return resp
	}
	if o.Buyer != b.Fingerprint {
		return protocol.Error(404, "no_order", "no such order")
	}
	if o.Delivery == nil {
		return protocol.Error(404, "not_delivered", "the back office has not confirmed delivery yet")
	}
	return &callpb.Response{Status: 200, Body: o.Delivery.Message, Headers: map[string]string{
		"Content-Type":        "application/pkcs7-mime; smime-type=authEnveloped-data",
		"Content-Disposition": `attachment; filename="` + o.Delivery.FileName + `.p7m"`,
	}}
}

// ack verifies and keeps the buyer's signed file acknowledgement. The
// acknowledgement's own signature, by the order's buyer's registered
// certificate, is the authentication.
func (h *Handler) ack(c *callpb.Call) *callpb.Response {
	id, resp := pathID(c)
	if resp != nil {
		return resp
	}
	unlock := h.lock(id)
	defer unlock()
	o, resp := h.loadOrder(c.GetReqId(), id)
	if resp != nil {
		return resp
	}
	if o.Delivery == nil {
		return protocol.Error(409, "not_delivered", "nothing was delivered for this order yet")
	}
	b := h.lookup(o.Buyer)
	if b == nil {
		return protocol.Error(403, "unknown_buyer", "the buyer of this order is no longer registered")
	}
	a, err := cms.VerifyAcknowledgement(c.GetBody(), o.Delivery.SignedData, o.Delivery.Content,
		cms.VerifyOptions{Registered: []*x509.Certificate{b.Cert}, CurrentTime: h.now()})
	if err != nil {
		h.log.Warn("acknowledgement refused", "req_id", c.GetReqId(), "order_id", id, "error", err)
		return protocol.Error(403, "bad_acknowledgement", "the acknowledgement does not verify for this delivery and buyer")
	}
	if o.Ack == nil || !bytes.Equal(o.Ack.DER, c.GetBody()) {
		o.Ack = &Ack{DER: c.GetBody(), FileName: a.FileName, FileSize: a.FileSize, At: h.now().UTC().Format(time.RFC3339)}
		o.Status = StatusAcknowledged
		if err := h.db.put("order-"+o.OrderID, o); err != nil {
			h.log.Error("store acknowledgement", "req_id", c.GetReqId(), "error", err)
			return protocol.Error(503, "store_failed", "the acknowledgement was not stored; send it again")
		}
		h.log.Info("acknowledged", "req_id", c.GetReqId(), "order_id", id, "file", a.FileName, "size", a.FileSize)
	}
	return protocol.JSON(200, map[string]any{"order_id": id, "status": o.Status, "file_name": a.FileName, "file_size": a.FileSize})
}
