package purchasing

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

// view is the order as the buyer sees it: no delivered document in clear.
func orderView(o *Order) any {
	v := *o
	type deliveryView struct {
		FileName string `json:"file_name"`
		At       string `json:"at"`
	}
	type ackView struct {
		FileName string `json:"file_name"`
		FileSize int64  `json:"file_size"`
		At       string `json:"at"`
	}
	out := struct {
		Order
		Delivery *deliveryView `json:"delivery,omitempty"`
		Ack      *ackView      `json:"acknowledgement,omitempty"`
	}{Order: v}
	if o.Delivery != nil {
		out.Delivery = &deliveryView{o.Delivery.FileName, o.Delivery.At}
	}
	if o.Ack != nil {
		out.Ack = &ackView{o.Ack.FileName, o.Ack.FileSize, o.Ack.At}
	}
	out.Order.Delivery, out.Order.Ack = nil, nil
	return out
}

// call makes a call through the gate agent: GET without a body, else a
// JSON POST.
func (h *Handler) call(ctx context.Context, reqID, script string, body []byte) (*callpb.Response, error) {
	return h.callAs(ctx, reqID, script, "application/json", body)
}

// callAs is call with the body's content type.
func (h *Handler) callAs(ctx context.Context, reqID, script, ctype string, body []byte) (*callpb.Response, error) {
	if h.gate == nil {
		return nil, fmt.Errorf("%s: no gate", script)
	}
	method := "POST"
	if body == nil {
		method, ctype = "GET", ""
	}
	c := &callpb.Call{ReqId: reqID, Script: script, Method: method, Body: body, Meta: map[string]string{}}
	if parent, ok := ctx.Value(callKey{}).(*callpb.Call); ok {
		c.User = parent.GetUser() // the person proved for the call this one serves, if any
	}
	if ctype != "" {
		c.Meta["CONTENT_TYPE"] = ctype
	}
	return h.gate.Call(ctx, c)
}

// sign has the key handler sign a JSON document of a purpose ("offer",
// "session", "statement": the script keyhandler/sign-<purpose>, which
// checks the document) as attached SignedData, DER.
func (h *Handler) sign(ctx context.Context, reqID, purpose string, doc []byte) ([]byte, error) {
	script := "keyhandler/sign-" + purpose
	r, err := h.callAs(ctx, reqID, script, "application/json", doc)
	if err != nil {
		return nil, err
	}
	if r.GetStatus() != 200 {
		return nil, fmt.Errorf("%s: status %d %s", script, r.GetStatus(), r.GetBody())
	}
	return r.GetBody(), nil
}

// merchantCert is the key handler's certificate, fetched once and again
// after forgetMerchant (the key handler's key was rotated).
func (h *Handler) merchantCert(ctx context.Context, reqID string) (*x509.Certificate, error) {
	h.certMu.Lock()
	defer h.certMu.Unlock()
	if h.merchant != nil {
		return h.merchant, nil
	}
	r, err := h.call(ctx, reqID, "keyhandler/certificate", nil)
	if err != nil {
		return nil, err
	}
	if r.GetStatus() != 200 {
		return nil, fmt.Errorf("keyhandler/certificate: status %d", r.GetStatus())
	}
	c, err := parseCertPEM(string(r.GetBody()))
	if err != nil {
		return nil, fmt.Errorf("keyhandler/certificate: %w", err)
	}
	h.merchant = c
	return c, nil
}

// forgetMerchant drops the cached certificate if it is old, so that the
// next merchantCert asks the key handler again: a document it signed with
// another certificate may be from a rotated key.
func (h *Handler) forgetMerchant(old *x509.Certificate) {
	h.certMu.Lock()
	defer h.certMu.Unlock()
	if h.merchant != nil && h.merchant.Equal(old) {
		h.merchant = nil
	}
}

// lock serialises the steps of one order (striped: a bounded set of
// mutexes, so ids from unauthenticated requests cannot grow memory).
func (h *Handler) lock(id string) func() {
	f := fnv.New32a()
	f.Write([]byte(id))
	mu := &h.locks[f.Sum32()%uint32(len(h.locks))]
	mu.Lock()
	return mu.Unlock
}

func contractResponse(status int, o *Order) *callpb.Response {
	return &callpb.Response{Status: int32(status), Body: o.Contract, Headers: map[string]string{
		"Content-Type":        signedDataType,
		"Content-Disposition": `attachment; filename="contract-` + o.OrderID + `.p7m"`,
		"Location":            "/cgi-bin/purchasing/order/" + o.OrderID,
	}}
}

const signedDataType = "application/pkcs7-mime; smime-type=signed-data"

// accept is E2S §6.2.1.1 steps 6–7: the buyer's signed acceptance of an
// offer this merchant issued becomes the countersigned contract.
func (h *Handler) accept(ctx context.Context, c *callpb.Call) *callpb.Response {
	// The request itself is signed by the buyer too: the acceptance's CMS
	// signature covers the offer, not the card beside it in the body.
	signer, resp := h.mustAuthenticate(c)
	if resp != nil {
		return resp
	}
	var req AcceptRequest
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Acceptance) == 0 {
		return protocol.Error(400, "bad_acceptance", `want {"acceptance":"<base64 DER>","card":{"pan","expiry"}}`)
	}
	// 1. Which offer? The content names it; nothing is trusted yet.
	loose, err := cms.Verify(req.Acceptance, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		h.log.Warn("acceptance refused", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(403, "bad_signature", "the acceptance's signatures do not verify")
	}
	var doc Offer
	if err := json.Unmarshal(loose.Content, &doc); err != nil || !idRE.MatchString(doc.OfferID) {
		return protocol.Error(409, "not_issued", "the content is not an offer this merchant issued")
	}
	var issued issuedOffer
	ok, err := h.db.get("offer-"+doc.OfferID, &issued)
	if err != nil {
		h.log.Error("read offer", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "read_failed", "the offer could not be read")
	}
	// 2. Exactly the bytes issued, nothing altered.
	if !ok || !bytes.Equal(issued.Content, loose.Content) {
		h.log.Warn("acceptance of an altered or unknown offer", "req_id", c.GetReqId(), "offer_id", doc.OfferID, "known", ok)
		return protocol.Error(409, "not_issued", "the content is not exactly an offer this merchant issued")
	}
	// 3. Signed by this merchant (that very signature) and by the buyer the
	// offer was made to, with the buyer's registered certificate.
	b := h.lookup(issued.Buyer)
	if b == nil || b.Org.ID != issued.Org {
		return protocol.Error(403, "unknown_buyer", "the buyer of this offer is no longer registered")
	}
	if b.Revoked {
		return protocol.Error(403, "revoked", "this buyer's registration is revoked")
	}
	if signer.Fingerprint != b.Fingerprint {
		return protocol.Error(403, "not_your_offer", "the offer was made to another buyer; its buyer sends the acceptance")
	}
	merchant, err := h.merchantCert(ctx, c.GetReqId())
	if err != nil {
		h.log.Error("merchant certificate", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "sign_unavailable", "the merchant certificate is not available; try again")
	}
	now := h.now()
	// The merchant's signature is the one issued (made by the key handler
	// then, with the key of that day: a rotation since leaves it valid).
	issuer := merchant
	if len(loose.Signers) > 0 && bytes.Equal(loose.Signers[0].Signature, issued.Signature) {
		issuer = loose.Signers[0].Certificate
	}
	signed, err := cms.Verify(req.Acceptance, cms.VerifyOptions{Registered: []*x509.Certificate{issuer, b.Cert}, CurrentTime: now})
	if err != nil || len(signed.Signers) != 2 ||
		!signed.Signers[0].Certificate.Equal(issuer) || !bytes.Equal(signed.Signers[0].Signature, issued.Signature) ||
		!signed.Signers[1].Certificate.Equal(b.Cert) {
		h.log.Warn("acceptance signature refused", "req_id", c.GetReqId(), "offer_id", doc.OfferID, "error", err)
		return protocol.Error(403, "bad_signature", "the acceptance must carry the merchant's offer signature and the buyer's, by its registered certificate")
	}
	unlock := h.lock(doc.OfferID)
	defer unlock()
	// An offer accepted before: the same contract again.
	if o, resp := h.loadOrder(c.GetReqId(), doc.OfferID); resp == nil {
		return contractResponse(200, o)
	} else if resp.GetStatus() != 404 {
		return resp
	}
	if until, err := time.Parse(time.RFC3339, issued.ValidUntil); err != nil || now.After(until) {
		return protocol.Error(410, "expired", "the offer has expired; ask for a new one")
	}
	// 4. The buyer's purchasing authority, as its manager set it.
	if resp := authority(b, &doc.Priced); resp != nil {
		return resp
	}
	// 5. Payment authorises (the order id is the offer id: a retry after a
	// crash is the same authorisation, never a second charge).
	auth, resp := h.authorize(ctx, c.GetReqId(), b, &doc, req.Card)
	if resp != nil {
		return resp
	}
	// 6. The merchant confirms: countersignature and third signature.
	r, err := h.callAs(ctx, c.GetReqId(), "keyhandler/countersign", "application/pkcs7-mime", req.Acceptance)
	if err != nil || r.GetStatus() != 200 {
		h.log.Error("countersign", "req_id", c.GetReqId(), "error", err, "status", r.GetStatus(), "reason", r.GetReason())
		return protocol.Error(502, "sign_unavailable", "the contract could not be signed; try again (payment is not charged twice)")
	}
	contract := r.GetBody()
	cs, err := cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{issuer, merchant, b.Cert}, CurrentTime: now})
	if l, lerr := cms.Verify(contract, cms.VerifyOptions{SkipTrust: true}); err != nil && lerr == nil && len(l.Signers) == 3 &&
		!l.Signers[2].Certificate.Equal(merchant) { // the key was rotated since we fetched its certificate
		h.forgetMerchant(merchant)
		if merchant, err = h.merchantCert(ctx, c.GetReqId()); err == nil {
			cs, err = cms.Verify(contract, cms.VerifyOptions{Registered: []*x509.Certificate{issuer, merchant, b.Cert}, CurrentTime: now})
		}
	}
	if err != nil || len(cs.Signers) != 3 || !bytes.Equal(cs.Content, issued.Content) || !cs.Signers[2].Certificate.Equal(merchant) {
		h.log.Error("key handler's contract does not verify", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(502, "sign_refused", "the contract could not be signed")
	}
	// 7. Stored durably, sealed, before anyone hears of it.
	o := &Order{OrderID: doc.OfferID, Created: now.UTC().Format(time.RFC3339Nano), Status: StatusAccepted,
		User: provenUser(b.Fingerprint), Org: b.Org.ID, Buyer: b.Fingerprint, BuyerName: b.Name, Terms: doc.Terms,
		Contract: contract, Authorization: auth, BackOffice: "pending", Priced: doc.Priced}
	if err := h.db.put("order-"+o.OrderID, o); err != nil {
		h.log.Error("store order", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(503, "store_failed", "the order was not stored; try again (payment is not charged twice)")
	}
	h.log.Info("contract made", "req_id", c.GetReqId(), "order_id", o.OrderID, "org", o.Org, "gross_cents", o.GrossCents, "auth_code", auth.AuthCode)
	// 8. To the back office.
	h.handToBackOffice(ctx, c.GetReqId(), o)
	return contractResponse(201, o)
}

// authorize asks payment for the authorisation of the order total.
func (h *Handler) authorize(ctx context.Context, reqID string, b *Buyer, doc *Offer, card Card) (*Authorization, *callpb.Response) {
	if !h.limitsSynced(b.Fingerprint) {
		h.syncLimits(ctx, reqID, b) // payment refuses what it has no limits for
	}
	body, _ := json.Marshal(map[string]any{
		"order_id": doc.OfferID, "org": b.Org.ID, "buyer": b.Fingerprint,
		"amount_cents": doc.GrossCents, "currency": doc.Currency, "category": mainCategory(&doc.Priced),
		"card": card,
	})
	r, err := h.call(ctx, reqID, "payment/authorize", body)
	if err == nil && r.GetStatus() == 400 {
		h.log.Info("payment refused the card details", "req_id", reqID, "order_id", doc.OfferID)
		return nil, protocol.Error(400, "bad_card", `the card details were refused: {"pan":"<digits>","expiry":"MM/YY"}`)
	}
	if err != nil || r.GetStatus() != 200 {
		h.log.Error("payment/authorize", "req_id", reqID, "error", err, "status", r.GetStatus(), "reason", r.GetReason())
		return nil, protocol.Error(503, "payment_unavailable", "payment could not be authorised now; try again")
	}
	var a Authorization
	if err := json.Unmarshal(r.GetBody(), &a); err != nil {
		return nil, protocol.Error(503, "payment_unavailable", "payment answered what this merchant cannot read")
	}
	a.At = h.now().UTC().Format(time.RFC3339)
	if !a.Approved {
		h.log.Info("payment declined", "req_id", reqID, "order_id", doc.OfferID, "response_code", a.ResponseCode, "reason", a.Reason)
		resp := protocol.JSON(402, map[string]string{"error": "payment_declined", "message": "the payment was declined", "reason": a.Reason, "response_code": a.ResponseCode})
		resp.Reason = "payment_declined"
		return nil, resp
	}
	return &a, nil
}

// mainCategory is the category with the largest share of the order, which
// payment's single category field carries (every line's category has been
// checked against the buyer's allowed categories already).
func mainCategory(p *Priced) string {
	sums := map[string]int64{}
	for _, l := range p.Lines {
		sums[l.Category] += l.NetCents
	}
	best, bestSum := "", int64(-1)
	cats := make([]string, 0, len(sums))
	for c := range sums {
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		if sums[c] > bestSum {
			best, bestSum = c, sums[c]
		}
	}
	return best
}

// BackOfficeOrder is what inside/order gets.
type BackOfficeOrder struct {
	OrderID   string `json:"order_id"`
	Org       string `json:"org"`
	Buyer     string `json:"buyer"`
	BuyerName string `json:"buyer_name"`
	AuthCode  string `json:"auth_code"`
	Contract  []byte `json:"contract"`
	Priced
}

// handToBackOffice gives the accepted order to inside/order and records
// whether it was taken; one not taken stays "pending" and is handed again
// on the buyer's next look at the order.
func (h *Handler) handToBackOffice(ctx context.Context, reqID string, o *Order) {
	body, _ := json.Marshal(BackOfficeOrder{OrderID: o.OrderID, Org: o.Org, Buyer: o.Buyer, BuyerName: o.BuyerName,
		AuthCode: o.Authorization.AuthCode, Contract: o.Contract, Priced: o.Priced})
	r, err := h.call(ctx, reqID, "inside/order", body)
	if err != nil || r.GetStatus()/100 != 2 {
		h.log.Warn("back office did not take the order", "req_id", reqID, "order_id", o.OrderID, "error", err, "status", r.GetStatus())
		return
	}
	o.BackOffice = "handed"
	if err := h.db.put("order-"+o.OrderID, o); err != nil {
		h.log.Error("store order", "req_id", reqID, "order_id", o.OrderID, "error", err)
	}
}
