package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ReceiptRequest is an RFC 2634 §2.7 receipt request, carried as a signed
// attribute of the original message.
type ReceiptRequest struct {
	// ContentIdentifier is the signedContentIdentifier; nil means 32 random
	// bytes (Sign fills it in on the caller's copy).
	ContentIdentifier []byte
	// FirstTierOnly asks only first-tier recipients for receipts
	// (receiptsFrom allOrFirstTier = firstTierRecipients); default all.
	FirstTierOnly bool
	// ReceiptsTo are e-mail addresses (rfc822Name) receipts should go to; at least one.
	ReceiptsTo []string
}

func (rr *ReceiptRequest) encode() ([]byte, error) {
	if len(rr.ReceiptsTo) == 0 {
		return nil, fmt.Errorf("%w: receipt request needs a receiptsTo address", ErrMalformed)
	}
	if rr.ContentIdentifier == nil {
		rr.ContentIdentifier = make([]byte, 32)
		if _, err := rand.Read(rr.ContentIdentifier); err != nil {
			return nil, fmt.Errorf("receipt request identifier: %w", err)
		}
	}
	from := int64(0)
	if rr.FirstTierOnly {
		from = 1
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1OctetString(rr.ContentIdentifier)
		b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { // allOrFirstTier [0] INTEGER
			b.AddBytes(mustMarshal(from)[2:])
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, to := range rr.ReceiptsTo {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
					b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) { // rfc822Name
						b.AddBytes([]byte(to))
					})
				})
			}
		})
	})
	return b.Bytes()
}

// parseReceiptRequest returns the signedContentIdentifier of a
// ReceiptRequest attribute value.
func parseReceiptRequest(der []byte) ([]byte, error) {
	s := cryptobyte.String(der)
	var seq, id cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !seq.ReadASN1(&id, cbasn1.OCTET_STRING) {
		return nil, fmt.Errorf("%w: receipt request", ErrMalformed)
	}
	return []byte(id), nil
}

// receipt is the RFC 2634 §2.8 Receipt.
type receipt struct {
	contentType       asn1.ObjectIdentifier
	contentIdentifier []byte
	signatureValue    []byte
}

func (r *receipt) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1ObjectIdentifier(r.contentType)
		b.AddASN1OctetString(r.contentIdentifier)
		b.AddASN1OctetString(r.signatureValue)
	})
	return b.BytesOrPanic()
}

func parseReceipt(der []byte) (*receipt, error) {
	s := cryptobyte.String(der)
	var seq, id, sig cryptobyte.String
	var version int64
	r := new(receipt)
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) || version != 1 ||
		!seq.ReadASN1ObjectIdentifier(&r.contentType) ||
		!seq.ReadASN1(&id, cbasn1.OCTET_STRING) || !seq.ReadASN1(&sig, cbasn1.OCTET_STRING) || !seq.Empty() {
		return nil, fmt.Errorf("%w: Receipt", ErrMalformed)
	}
	r.contentIdentifier, r.signatureValue = []byte(id), []byte(sig)
	return r, nil
}

// originalSigner picks the SignerInfo of the original message a receipt is
// for: the first one carrying a receipt request, else (when allowed) the first.
func originalSigner(sd *signedData, needRequest bool) (*signerInfo, []byte, error) {
	for i := range sd.signerInfos {
		si := &sd.signerInfos[i]
		if si.signedAttrs == nil {
			continue
		}
		attrs, err := parseAttributes(si.signedAttrs)
		if err != nil {
			return nil, nil, err
		}
		rr, ok, err := findAttribute(attrs, oidBytes(oidAttrReceiptRequest))
		if err != nil {
			return nil, nil, err
		}
		if ok {
			id, err := parseReceiptRequest(rr)
			return si, id, err
		}
	}
	if needRequest || len(sd.signerInfos) == 0 {
		return nil, nil, ErrNoReceiptRequest
	}
	// A signer without signed attributes (openssl cms -sign -noattr) is
	// acknowledged by its signature value alone (no msgSigDigest).
	return &sd.signerInfos[0], nil, nil
}

// SignReceipt returns an RFC 2634 signed receipt (a DER ContentInfo holding
// SignedData of id-ct-receipt) for the original SignedData, which must carry
// a receipt request. It verifies the original first, as RFC 2634 §2.3
// requires, with verify (verify.Content for detached originals).
func SignReceipt(original []byte, verify VerifyOptions, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) ([]byte, error) {
	der, err := signReceipt(original, verify, key, chain, opts, true, nil)
	if err != nil {
		return nil, fmt.Errorf("sign receipt: %w", err)
	}
	return der, nil
}

func signReceipt(original []byte, verify VerifyOptions, key crypto.Signer, chain []*x509.Certificate, opts SignOptions, needRequest bool, extra []attribute) ([]byte, error) {
	sd, err := parseSignedData(original)
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	if _, err := sd.verify(verify); err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	return signReceiptFor(sd, key, chain, opts, needRequest, extra)
}

// signReceiptFor is signReceipt for an original already verified.
func signReceiptFor(sd *signedData, key crypto.Signer, chain []*x509.Certificate, opts SignOptions, needRequest bool, extra []attribute) ([]byte, error) {
	osi, id, err := originalSigner(sd, needRequest)
	if err != nil {
		return nil, err
	}
	ct := oidReceipt
	if id == nil {
		ct = oidFileAck
		id = []byte{}
	}
	r := receipt{contentType: sd.contentType, contentIdentifier: id, signatureValue: osi.signature}
	// msgSigDigest uses the original signer's digest algorithm, as openssl
	// computes and checks it.
	h, err := hashFromAlgorithm(osi.digestAlg)
	if err != nil {
		return nil, fmt.Errorf("original: %w", err)
	}
	opts.Detached = false
	opts.NoSignedAttributes = false
	opts.ReceiptRequest = nil
	opts.contentType = ct
	opts.extraAttrs = extra
	if osi.signedAttrs != nil {
		opts.extraAttrs = append([]attribute{{
			typ:    oidBytes(oidAttrMsgSigDigest),
			values: [][]byte{mustMarshal(digest(h, osi.signedAttrsDER()))},
		}}, extra...)
	}
	return Sign(r.encode(), key, chain, opts)
}

// Receipt describes a verified receipt or acknowledgement.
type Receipt struct {
	// Signer is the receipt's verified signer.
	Signer SignerInfo
	// ContentIdentifier is the signedContentIdentifier of the receipt
	// request; empty for acknowledgements of messages without a request.
	ContentIdentifier []byte
	// SigningTime is when the receipt was signed (zero if not stated).
	SigningTime time.Time
}

// VerifyReceipt verifies an RFC 2634 signed receipt against the original
// SignedData it acknowledges: the receipt's signature (with opts), the
// Receipt content (content type, signedContentIdentifier of the original's
// receipt request, originator signature value) and the msgSigDigest over the
// original signer's signed attributes.
func VerifyReceipt(receiptDER, original []byte, opts VerifyOptions) (*Receipt, error) {
	r, _, err := verifyReceipt(receiptDER, original, opts, true)
	if err != nil {
		return nil, fmt.Errorf("verify receipt: %w", err)
	}
	return r, nil
}

func verifyReceipt(receiptDER, original []byte, opts VerifyOptions, needRequest bool) (*Receipt, []attribute, error) {
	opts.Content = nil
	signed, err := Verify(receiptDER, opts)
	if err != nil {
		return nil, nil, err
	}
	if len(signed.Signers) != 1 {
		return nil, nil, fmt.Errorf("%w: %d receipt signers, want 1", ErrReceipt, len(signed.Signers))
	}
	if !signed.ContentType.Equal(oidReceipt) && (needRequest || !signed.ContentType.Equal(oidFileAck)) {
		return nil, nil, fmt.Errorf("%w: content type %v", ErrUnexpectedContentType, signed.ContentType)
	}
	r, err := parseReceipt(signed.Content)
	if err != nil {
		return nil, nil, err
	}
	sd, err := parseSignedData(original)
	if err != nil {
		return nil, nil, fmt.Errorf("original: %w", err)
	}
	var osi *signerInfo
	for i := range sd.signerInfos {
		if bytes.Equal(sd.signerInfos[i].signature, r.signatureValue) {
			osi = &sd.signerInfos[i]
			break
		}
	}
	if osi == nil {
		return nil, nil, fmt.Errorf("%w: no original signature with this value", ErrReceipt)
	}
	noAttrs := osi.signedAttrs == nil
	if noAttrs && signed.ContentType.Equal(oidReceipt) {
		return nil, nil, fmt.Errorf("%w: original signer has no signed attributes", ErrReceipt)
	}
	if !r.contentType.Equal(sd.contentType) {
		return nil, nil, fmt.Errorf("%w: content type %v, original %v", ErrReceipt, r.contentType, sd.contentType)
	}
	oattrs, err := parseAttributes(osi.signedAttrs)
	if err != nil {
		return nil, nil, err
	}
	rr, hasRequest, err := findAttribute(oattrs, oidBytes(oidAttrReceiptRequest))
	if err != nil {
		return nil, nil, err
	}
	if signed.ContentType.Equal(oidReceipt) {
		if !hasRequest {
			return nil, nil, ErrNoReceiptRequest
		}
		id, err := parseReceiptRequest(rr)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(id, r.contentIdentifier) {
			return nil, nil, fmt.Errorf("%w: signedContentIdentifier differs", ErrReceipt)
		}
	} else if len(r.contentIdentifier) != 0 {
		return nil, nil, fmt.Errorf("%w: acknowledgement with a content identifier", ErrReceipt)
	}
	signer := signed.Signers[0]
	attrs, err := parseAttributes(signer.raw.signedAttrs)
	if err != nil {
		return nil, nil, err
	}
	msd, ok, err := findAttribute(attrs, oidBytes(oidAttrMsgSigDigest))
	if err != nil {
		return nil, nil, err
	}
	if noAttrs {
		// Bound by originatorSignatureValue alone; a msgSigDigest would
		// have nothing to cover.
		if ok {
			return nil, nil, fmt.Errorf("%w: msgSigDigest for a signature without signed attributes", ErrReceipt)
		}
		return &Receipt{Signer: signer, ContentIdentifier: r.contentIdentifier, SigningTime: signer.SigningTime}, attrs, nil
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: msgSigDigest", ErrMissingAttribute)
	}
	var msdValue []byte
	if rest, err := asn1.Unmarshal(msd, &msdValue); err != nil || len(rest) != 0 {
		return nil, nil, fmt.Errorf("%w: msgSigDigest", ErrMalformed)
	}
	oh, err := hashFromAlgorithm(osi.digestAlg)
	if err != nil {
		return nil, nil, fmt.Errorf("original: %w", err)
	}
	if !bytes.Equal(msdValue, digest(oh, osi.signedAttrsDER())) {
		return nil, nil, fmt.Errorf("%w: msgSigDigest does not match the original signed attributes", ErrReceipt)
	}
	return &Receipt{Signer: signer, ContentIdentifier: r.contentIdentifier, SigningTime: signer.SigningTime}, attrs, nil
}
