package keyhandler

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"

	"github.com/e2sgate/e2sgate/compartments/protocol"
	"github.com/e2sgate/e2sgate/compartments/protocol/callpb"
	"github.com/e2sgate/e2sgate/internal/document/cms"
)

const signedDataType = "application/pkcs7-mime; smime-type=signed-data"

// countersign turns an accepted offer — SignedData with exactly two
// signers, the first this merchant's own — into the contract (E2S
// §6.2.1.1 step 7): an RFC 5652 countersignature over the buyer's
// signature value (the merchant saw that acceptance) and a third SignerInfo
// over the same content (merchant, buyer, merchant), which any CMS
// verifier, openssl among them, checks. Whether the buyer is who the
// buyer's certificate says is the caller's decision (it holds the
// registered certificates); the key handler only refuses to confirm what
// it did not offer itself.
func (h *Handler) countersign(c *callpb.Call) *callpb.Response {
	der := c.GetBody()
	signed, err := cms.Verify(der, cms.VerifyOptions{SkipTrust: true})
	if err != nil {
		h.log.Warn("countersign refused", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(400, "bad_signature", "the acceptance does not verify")
	}
	if len(signed.Signers) != 2 || !signed.Signers[0].Certificate.Equal(h.cert) || signed.Signers[1].Certificate.Equal(h.cert) {
		return protocol.Error(400, "not_an_acceptance", "an acceptance has the merchant's signature first and the buyer's second")
	}
	out, err := cms.CounterSign(der, 1, h.key, []*x509.Certificate{h.cert}, cms.SignOptions{})
	if err == nil {
		out, err = cms.AddSigner(out, nil, h.key, []*x509.Certificate{h.cert}, cms.SignOptions{})
	}
	if err != nil {
		h.log.Error("countersign failed", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(500, "sign_failed", "signing failed")
	}
	h.log.Info("countersigned", "req_id", c.GetReqId(), "caller", c.GetCaller(), "buyer", signed.Signers[1].Certificate.Subject.String())
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
		return protocol.Error(400, "bad_request", `want {"content":"<base64>","recipient":"<PEM certificate>"}`)
	}
	blk, _ := pem.Decode([]byte(req.Recipient))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return protocol.Error(400, "bad_recipient", "recipient is not a PEM certificate")
	}
	rcpt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return protocol.Error(400, "bad_recipient", "recipient certificate does not parse")
	}
	p, err := cms.ProtectDocument(req.Content, h.key, []*x509.Certificate{h.cert}, []*x509.Certificate{rcpt}, cms.ProtectOptions{})
	if err != nil {
		h.log.Warn("protect failed", "req_id", c.GetReqId(), "error", err)
		return protocol.Error(400, "protect_failed", "the document could not be protected for this recipient")
	}
	h.log.Info("protected", "req_id", c.GetReqId(), "caller", c.GetCaller(), "recipient", rcpt.Subject.String(), "bytes", len(req.Content))
	return protocol.JSON(200, ProtectResponse{Message: p.Message, SignedData: p.SignedData})
}
