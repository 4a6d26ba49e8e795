package keyhandler

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"time"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/compartments/purchasing/api"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

const signedDataType = "application/pkcs7-mime; smime-type=signed-data"

// countersign turns an accepted offer — SignedData with exactly two
// signers, the first this merchant's own — into the contract (E2S
// §6.2.1.1 step 7): an RFC 5652 countersignature over the buyer's
// signature value (the merchant saw that acceptance) and a third SignerInfo
// over the same content (merchant, buyer, merchant), which any CMS
// verifier, openssl among them, checks. The content must be an offer in
// this merchant's name to a buyer (not a quotation), not expired, and the
// second signature must be by the certificate whose fingerprint the offer
// names. Whether that buyer is registered is the caller's decision (it
// holds the registrations); the key handler refuses to confirm what it did
// not offer itself, or what another key than the offer's buyer accepted.
func (h *Handler) countersign(c *callpb.Call) *callpb.Response {
	const purpose = "contract"
	der := c.GetBody()
	signed, err := cms.Verify(der, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		return h.refused(c, purpose, refuse(ReasonAcceptance, "the acceptance does not verify"))
	}
	if len(signed.Signers) != 2 || !h.ownCertificate(signed.Signers[0].Certificate) || h.ownCertificate(signed.Signers[1].Certificate) {
		return h.refused(c, purpose, refuse(ReasonAcceptance, "an acceptance has the merchant's signature first and the buyer's second"))
	}
	var offer api.Offer
	if r := decode(signed.Content, api.TypeOffer, &offer); r != nil {
		return h.refused(c, purpose, r)
	}
	if r := h.offerFields(&offer); r != nil {
		return h.refused(c, purpose, r)
	}
	if offer.Buyer == "" {
		return h.refused(c, purpose, refuse(ReasonBuyer, "a quotation names no buyer and makes no contract"))
	}
	if until, _ := time.Parse(time.RFC3339, offer.ValidUntil); h.now().After(until.Add(clockSkew)) {
		return h.refused(c, purpose, refuse(ReasonTime, "the offer expired at %s", offer.ValidUntil))
	}
	sum := sha256.Sum256(signed.Signers[1].Certificate.Raw)
	if hex.EncodeToString(sum[:]) != offer.Buyer {
		return h.refused(c, purpose, refuse(ReasonBuyer, "the acceptance is signed by another certificate than the buyer the offer names"))
	}
	out, err := cms.CounterSign(der, 1, h.key, []*x509.Certificate{h.cert}, cms.SignOptions{})
	if err == nil {
		out, err = cms.AddSigner(out, nil, h.key, []*x509.Certificate{h.cert}, cms.SignOptions{})
	}
	if err != nil {
		h.log.Error("countersign failed", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "sign_failed", "signing failed")
	}
	h.log.Info("countersigned", "req_id", c.GetReqId(), "caller", c.GetCaller(), "purpose", purpose, "offer_id", offer.OfferID,
		"buyer", signed.Signers[1].Certificate.Subject.String())
	return &callpb.Response{Status: 200, Headers: map[string]string{"Content-Type": signedDataType}, Body: out}
}

// ProtectRequest asks for a document to be compressed, signed by the
// merchant and encrypted for the recipient's certificate.
type ProtectRequest struct {
	Content   []byte `json:"content"`   // the document (base64 in JSON)
	Recipient string `json:"recipient"` // PEM certificate
}

// ProtectResponse is the protected document and the SignedData inside it,
// which the sender keeps to check the recipient's acknowledgement.
type ProtectResponse struct {
	Message    []byte `json:"message"`
	SignedData []byte `json:"signed_data"`
}

func (h *Handler) protect(c *callpb.Call) *callpb.Response {
	var req ProtectRequest
	dec := json.NewDecoder(bytes.NewReader(c.GetBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || len(req.Content) == 0 {
		return h.refused(c, "delivery", refuse(ReasonMalformed, `want {"content":"<base64>","recipient":"<PEM certificate>"}`))
	}
	blk, _ := pem.Decode([]byte(req.Recipient))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return h.refused(c, "delivery", refuse(ReasonRecipient, "recipient is not a PEM certificate"))
	}
	rcpt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return h.refused(c, "delivery", refuse(ReasonRecipient, "recipient certificate does not parse"))
	}
	if r := h.checkDelivery(req.Content, rcpt); r != nil {
		return h.refused(c, "delivery", r)
	}
	p, err := cms.ProtectDocument(req.Content, h.key, []*x509.Certificate{h.cert}, []*x509.Certificate{rcpt}, cms.ProtectOptions{})
	if err != nil {
		h.log.Warn("protect failed", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(400, "protect_failed", "the document could not be protected for this recipient")
	}
	h.log.Info("protected", "req_id", c.GetReqId(), "caller", c.GetCaller(), "purpose", "delivery", "recipient", rcpt.Subject.String(), "bytes", len(req.Content))
	return protocol.JSON(200, ProtectResponse{Message: p.Message, SignedData: p.SignedData})
}
