package client

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

// ProtectOptions controls Protect.
type ProtectOptions struct {
	// To is the recipient's partner id in the certstore.
	To string
	// Ack asks the recipient for an RFC 2634 signed receipt.
	Ack bool
	// Cipher is the content encryption (AES-256-GCM by default; AES-256-CBC
	// for peers such as openssl <= 3.0.19 that cannot read RFC 5083
	// authenticated attributes).
	Cipher cms.Cipher
	// Keep, if set, is where the inner SignedData is written (the signed,
	// compressed document, not encrypted): what VerifyAck needs when our
	// key cannot decrypt our own copy, e.g. on a token.
	Keep string
}

// ProtectResult describes a protected document.
type ProtectResult struct {
	To          string
	Size        int
	Written     int
	ReceiptAsk  bool
	Fingerprint string
}

// Protect compresses, signs and encrypts the document in for partner opts.To
// and writes the message to out. The message is also encrypted to our own
// certificate, so that we can open it again later to check the partner's
// acknowledgement (VerifyAck).
func (c *Client) Protect(in, out string, opts ProtectOptions) (*ProtectResult, error) {
	if err := distinct(in, out, opts.Keep); err != nil {
		return nil, err
	}
	doc, err := readInput(in)
	if err != nil {
		return nil, err
	}
	p, err := c.partner(opts.To)
	if err != nil {
		return nil, err
	}
	if now := time.Now(); now.Before(p.Certificate.NotBefore) || now.After(p.Certificate.NotAfter) {
		return nil, fmt.Errorf("partner %s: certificate valid %s to %s: %w", opts.To,
			p.Certificate.NotBefore.Format(time.DateOnly), p.Certificate.NotAfter.Format(time.DateOnly), cms.ErrCertificateExpired)
	}
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	po := cms.ProtectOptions{Encrypt: cms.EncryptOptions{Cipher: opts.Cipher}}
	if opts.Ack {
		po.Sign.ReceiptRequest = &cms.ReceiptRequest{ReceiptsTo: []string{c.cfg.ReceiptsTo}}
	}
	recipients := []*x509.Certificate{p.Certificate}
	if own := cred.Certificate(); !own.Equal(p.Certificate) {
		recipients = append(recipients, own)
	}
	p2, err := cms.ProtectDocument(doc, cred.Signer, cred.Chain, recipients, po)
	if err != nil {
		return nil, fmt.Errorf("protect %s for %s: %w", in, opts.To, err)
	}
	msg := p2.Message
	if err := writeOutputs(Output{Path: out, Data: msg, Mode: 0o644}, Output{Path: opts.Keep, Data: p2.SignedData, Mode: 0o600}); err != nil {
		return nil, err
	}
	c.log.Info("protected", "in", in, "out", out, "to", opts.To, "size", len(doc), "receipt_request", opts.Ack)
	return &ProtectResult{To: opts.To, Size: len(doc), Written: len(msg), ReceiptAsk: opts.Ack, Fingerprint: fingerprint(p.Certificate)}, nil
}

// OpenOptions controls Open.
type OpenOptions struct {
	// From, if set, requires the document to be signed by that partner.
	From string
	// AckOut, if set, is where the signed file acknowledgement is written.
	AckOut string
	// FileName is the name the acknowledgement states; default: base of out.
	FileName string
}

// OpenResult describes an opened document.
type OpenResult struct {
	From            string
	SignedAt        time.Time
	Size            int
	Compressed      bool
	ReceiptAsked    bool
	AckWritten      bool
	EncryptedAsData bool
}

// opened is a decrypted, verified, decompressed document.
type opened struct {
	content    []byte
	signedData []byte // DER (or BER) ContentInfo(SignedData)
	signed     *cms.Signed
	compressed bool
	asData     bool // the encryption carried the SignedData as id-data (openssl's nesting)
}

// Open decrypts the message in with our credential, verifies the signature
// against the certstore, decompresses, and writes the document to out and,
// if asked, the signed file acknowledgement to opts.AckOut. Nothing is
// written unless every step succeeds.
func (c *Client) Open(in, out string, opts OpenOptions) (*OpenResult, error) {
	if err := distinct(in, out, opts.AckOut); err != nil {
		return nil, err
	}
	msg, err := readInput(in)
	if err != nil {
		return nil, err
	}
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	vo, err := c.verifyOptions()
	if err != nil {
		return nil, err
	}
	o, err := c.open(msg, cred, vo)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", in, err)
	}
	signer := o.signed.Signers[0]
	from := c.whoIs(signer.Certificate)
	if opts.From != "" {
		want, err := c.partner(opts.From)
		if err != nil {
			return nil, err
		}
		if !want.Certificate.Equal(signer.Certificate) {
			return nil, fmt.Errorf("open %s: signed by %s, not %s: %w", in, from, opts.From, ErrWrongSender)
		}
	}
	res := &OpenResult{From: from, SignedAt: signer.SigningTime, Size: len(o.content), Compressed: o.compressed,
		ReceiptAsked: hasReceiptRequest(o.signedData), EncryptedAsData: o.asData}
	outs := []Output{{Path: out, Data: o.content, Mode: 0o600}}
	if opts.AckOut != "" {
		name := opts.FileName
		if name == "" {
			name = filepath.Base(out)
		}
		ack, err := cms.Acknowledge(o.signedData, o.content, name, cred.Signer, cred.Chain, cms.AckOptions{Verify: vo})
		if err != nil {
			return nil, fmt.Errorf("acknowledge %s: %w", in, err)
		}
		outs = append(outs, Output{Path: opts.AckOut, Data: ack, Mode: 0o644})
		res.AckWritten = true
	}
	if err := writeOutputs(outs...); err != nil {
		return nil, err
	}
	c.log.Info("opened", "in", in, "out", out, "from", from, "size", len(o.content), "ack", opts.AckOut)
	return res, nil
}

// open decrypts and verifies msg. Besides Protect's nesting (the encrypted
// content type is id-signedData) it accepts the nesting "openssl cms -sign
// | openssl cms -encrypt" writes, where the SignedData ContentInfo is
// encrypted as id-data; either way the content must be signed.
func (c *Client) open(msg []byte, cred *keystore.Credential, vo cms.VerifyOptions) (*opened, error) {
	key, err := decryptionKey(cred)
	if err != nil {
		return nil, err
	}
	o, err := cms.Open(msg, cred.Certificate(), key, cms.OpenOptions{Verify: vo})
	if err == nil {
		return &opened{content: o.Content, signedData: o.SignedData, signed: o.Signed, compressed: o.Compressed}, nil
	}
	if !errors.Is(err, cms.ErrUnexpectedContentType) {
		return nil, err
	}
	inner, derr := cms.Decrypt(msg, cred.Certificate(), key)
	if derr != nil {
		// Not id-data either: the signed content had an unexpected type.
		return nil, err
	}
	if !isSignedData(inner) {
		return nil, fmt.Errorf("%w: the encrypted content carries no signature", ErrNotSigned)
	}
	r, err := c.verifySigned(inner, vo)
	if err != nil {
		return nil, err
	}
	r.asData = true
	return r, nil
}

// verifySigned verifies a SignedData ContentInfo and decompresses its
// content if it is CompressedData.
func (c *Client) verifySigned(signedData []byte, vo cms.VerifyOptions) (*opened, error) {
	s, err := cms.Verify(signedData, vo)
	if err != nil {
		return nil, err
	}
	r := &opened{signedData: signedData, signed: s, content: s.Content}
	switch {
	case s.ContentType.Equal(oidData):
	case s.ContentType.Equal(oidCompressedData):
		ci, err := asn1.Marshal(contentInfo{ContentType: oidCompressedData, Content: asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: s.Content}})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", cms.ErrMalformed, err)
		}
		if r.content, err = cms.Decompress(ci, 0); err != nil {
			return nil, err
		}
		r.compressed = true
	default:
		return nil, fmt.Errorf("signed content %v: %w", s.ContentType, cms.ErrUnexpectedContentType)
	}
	return r, nil
}

var (
	oidData           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidCompressedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9}
	oidReceiptRequest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 1}
)

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue
}

// contentTypeOf returns the content type of a ContentInfo, accepting the
// BER indefinite-length outer SEQUENCE openssl may write.
func contentTypeOf(der []byte) (asn1.ObjectIdentifier, bool) {
	if len(der) < 4 || der[0] != 0x30 {
		return nil, false
	}
	var rest []byte
	switch l := der[1]; {
	case l == 0x80:
		rest = der[2:]
	case l < 0x80:
		rest = der[2:]
	case l <= 0x84 && len(der) > int(2+l&0x7f):
		rest = der[2+int(l&0x7f):]
	default:
		return nil, false
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(rest, &oid); err != nil {
		return nil, false
	}
	return oid, true
}

func isSignedData(der []byte) bool {
	oid, ok := contentTypeOf(der)
	return ok && oid.Equal(oidSignedData)
}

// hasReceiptRequest tells whether the SignedData may carry an RFC 2634
// receipt request: the attribute type's DER occurs in it. It is only used
// to remind the user to send an acknowledgement (cms does not expose the
// signed attributes); Acknowledge decides the format itself.
func hasReceiptRequest(signedData []byte) bool {
	oid, err := asn1.Marshal(oidReceiptRequest)
	if err != nil {
		return false
	}
	return containsBytes(signedData, oid)
}

func containsBytes(b, sub []byte) bool {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return true
		}
	}
	return false
}

// AckResult describes a verified acknowledgement.
type AckResult struct {
	By          string
	FileName    string
	FileSize    int64
	FileHash    crypto.Hash
	FileDigest  []byte
	SignedAt    time.Time
	ESSReceipt  bool
	DocumentLen int
}

// VerifyAck checks the signed file acknowledgement in ack against the
// message we sent: original is either the protected file (encrypted to us
// too by Protect) or the SignedData we kept. It proves the partner received
// and decrypted exactly that document.
func (c *Client) VerifyAck(ack, original string) (*AckResult, error) {
	ackDER, err := readInput(ack)
	if err != nil {
		return nil, err
	}
	orig, err := readInput(original)
	if err != nil {
		return nil, err
	}
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	// Our own signature on the original.
	self := cms.VerifyOptions{Registered: []*x509.Certificate{cred.Certificate()}}
	var o *opened
	if isSignedData(orig) {
		o, err = c.verifySigned(orig, self)
	} else {
		o, err = c.open(orig, cred, self)
	}
	if err != nil {
		return nil, fmt.Errorf("original %s (must be a file you protected): %w", original, err)
	}
	vo, err := c.verifyOptions()
	if err != nil {
		return nil, err
	}
	a, err := cms.VerifyAcknowledgement(ackDER, o.signedData, o.content, vo)
	if err != nil {
		return nil, fmt.Errorf("acknowledgement %s of %s: %w", ack, original, err)
	}
	by := c.whoIs(a.Signer.Certificate)
	c.log.Info("acknowledgement verified", "ack", ack, "original", original, "by", by)
	return &AckResult{By: by, FileName: a.FileName, FileSize: a.FileSize, FileHash: a.FileHash, FileDigest: a.FileDigest,
		SignedAt: a.SigningTime, ESSReceipt: len(a.ContentIdentifier) > 0, DocumentLen: len(o.content)}, nil
}

// verifyOptions trusts the partner certificates in the certstore (and the
// configured roots), refusing those marked revoked.
func (c *Client) verifyOptions() (cms.VerifyOptions, error) {
	s, err := c.store()
	if err != nil {
		return cms.VerifyOptions{}, err
	}
	// Revoked certificates are included so that their signers are found
	// and refused as revoked (CheckRevocation), not as unknown.
	entries, err := s.List()
	if err != nil {
		return cms.VerifyOptions{}, fmt.Errorf("certstore: %w", err)
	}
	certs := make([]*x509.Certificate, 0, len(entries))
	for _, e := range entries {
		certs = append(certs, e.Certificate)
	}
	roots, err := c.roots()
	if err != nil {
		return cms.VerifyOptions{}, err
	}
	vo := cms.VerifyOptions{Registered: certs, CheckRevocation: s.CheckRevocation}
	if roots != nil {
		vo.Roots = roots
	}
	return vo, nil
}

// fingerprint is the SHA-256 of a certificate's DER, in hex pairs.
func fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	const hexdig = "0123456789ABCDEF"
	b := make([]byte, 0, len(sum)*3)
	for i, v := range sum {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexdig[v>>4], hexdig[v&0xf])
	}
	return string(b)
}
