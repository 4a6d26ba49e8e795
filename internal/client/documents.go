package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/e2sgate/e2sgate/internal/document/cms"
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
	// Compress is "auto" (the default: only when a sample of the document
	// compresses), "on" or "off".
	Compress string
	// OpenSSL writes the nesting "openssl cms -decrypt | openssl cms
	// -verify" reads (the SignedData ContentInfo encrypted as id-data).
	OpenSSL bool
	// Force replaces existing output files.
	Force bool
	// Progress, if set, reports the bytes read.
	Progress *Progress
}

// ProtectResult describes a protected document.
type ProtectResult struct {
	To          string
	Size        int64
	Written     int64
	Compressed  bool
	ReceiptAsk  bool
	Fingerprint string
}

// Protect compresses (see ProtectOptions.Compress), signs and encrypts the
// document in for partner opts.To and writes the message to out, streaming:
// memory does not grow with the document. The message is also encrypted to
// our own certificate, so that we can open it again later to check the
// partner's acknowledgement (VerifyAck). Nothing is written under out (or
// opts.Keep) unless every step succeeds; ctx stops the work.
func (c *Client) Protect(ctx context.Context, in, out string, opts ProtectOptions) (res *ProtectResult, err error) {
	if err := distinct(in, out, opts.Keep); err != nil {
		return nil, err
	}
	po := cms.ProtectStreamOptions{ProtectOptions: cms.ProtectOptions{Encrypt: cms.EncryptOptions{Cipher: opts.Cipher}}, OpenSSLNesting: opts.OpenSSL}
	switch opts.Compress {
	case "", "auto":
		po.AutoCompress = true
	case "on":
	case "off":
		po.NoCompression = true
	default:
		return nil, fmt.Errorf("compress %q: auto, on or off: %w", opts.Compress, ErrUsage)
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
	if opts.Ack {
		po.Sign.ReceiptRequest = &cms.ReceiptRequest{ReceiptsTo: []string{c.cfg.ReceiptsTo}}
	}
	recipients := []*x509.Certificate{p.Certificate}
	if own := cred.Certificate(); !own.Equal(p.Certificate) {
		recipients = append(recipients, own)
	}
	src, size, err := openInput(in)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer closeOnDone(ctx, src)()
	dst, err := createOutput(out, 0o644, opts.Force)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			dst.abort()
		}
	}()
	var keep *pendingFile
	if opts.Keep != "" {
		if keep, err = createOutput(opts.Keep, 0o600, opts.Force); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				keep.abort()
			}
		}()
		po.Keep = keep
	}
	r := ctxReader{ctx: ctx, r: opts.Progress.wrap(src, size)}
	sp, err := cms.ProtectStream(dst, r, cred.Signer, cred.Chain, recipients, po)
	opts.Progress.done()
	if err == nil {
		err = interrupted(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("protect %s for %s: %w", in, opts.To, err)
	}
	if err := commitAll(dst, keep); err != nil {
		return nil, err
	}
	written := int64(-1)
	if st, err := os.Stat(out); err == nil {
		written = st.Size()
	}
	c.log.Info("protected", "in", in, "out", out, "to", opts.To, "size", sp.Size, "compressed", sp.Compressed, "receipt_request", opts.Ack)
	return &ProtectResult{To: opts.To, Size: sp.Size, Written: written, Compressed: sp.Compressed, ReceiptAsk: opts.Ack, Fingerprint: fingerprint(p.Certificate)}, nil
}

// commitAll commits the outputs in order; if one fails, those already
// renamed are removed again and the rest aborted.
func commitAll(files ...*pendingFile) error {
	var done []string
	for i, f := range files {
		if f == nil {
			continue
		}
		if err := f.commit(); err != nil {
			for _, p := range done {
				os.Remove(p)
			}
			for _, g := range files[i+1:] {
				g.abort()
			}
			return err
		}
		done = append(done, f.path)
	}
	return nil
}

// OpenOptions controls Open.
type OpenOptions struct {
	// From, if set, requires the document to be signed by that partner.
	From string
	// AckOut, if set, is where the signed file acknowledgement is written.
	AckOut string
	// FileName is the name the acknowledgement states; default: base of out.
	FileName string
	// MaxSize bounds the document's size (DefaultMaxOpen if <= 0), against
	// compressed data that inflates without end.
	MaxSize int64
	// Force replaces existing output files.
	Force bool
	// Progress, if set, reports the bytes read.
	Progress *Progress
}

// DefaultMaxOpen is the largest document Open writes unless told otherwise.
const DefaultMaxOpen = 64 << 30

// OpenResult describes an opened document.
type OpenResult struct {
	From            string
	SignedAt        time.Time
	Size            int64
	Compressed      bool
	ReceiptAsked    bool
	AckWritten      bool
	EncryptedAsData bool
	Format          cms.Format
}

// Open decrypts the message in (DER, PEM or S/MIME, detected) with our
// credential, verifies the signature against the certstore, decompresses,
// and writes the document to out and, if asked, the signed file
// acknowledgement to opts.AckOut, streaming. The document is written to a
// temporary file renamed to out only after the GCM tag and the signature
// have been checked: nothing is written unless every step succeeds. It
// reads Protect's nesting and the one "openssl cms -sign | openssl cms
// -encrypt" writes (the SignedData encrypted as id-data).
func (c *Client) Open(ctx context.Context, in, out string, opts OpenOptions) (res *OpenResult, err error) {
	if err := distinct(in, out, opts.AckOut); err != nil {
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
	key, err := decryptionKey(cred)
	if err != nil {
		return nil, err
	}
	src, size, err := openInput(in)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer closeOnDone(ctx, src)()
	msg, format, err := cms.Unarmor(ctxReader{ctx: ctx, r: opts.Progress.wrap(src, size)})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", in, err)
	}
	dst, err := createOutput(out, 0o600, opts.Force)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			dst.abort()
		}
	}()
	var ackFile *pendingFile
	if opts.AckOut != "" {
		if ackFile, err = createOutput(opts.AckOut, 0o644, opts.Force); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				ackFile.abort()
			}
		}()
	}
	max := opts.MaxSize
	if max <= 0 {
		max = DefaultMaxOpen
	}
	o, err := cms.OpenStream(dst, msg, cred.Certificate(), key, cms.OpenOptions{Verify: vo, MaxSize: max})
	opts.Progress.done()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", in, err)
	}
	signer := o.Signed.Signers[0]
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
	res = &OpenResult{From: from, SignedAt: signer.SigningTime, Size: o.Size, Compressed: o.Compressed,
		ReceiptAsked: hasReceiptRequest(o.SignedData), EncryptedAsData: o.AsData, Format: format}
	if ackFile != nil {
		name := opts.FileName
		if name == "" {
			name = filepath.Base(out)
		}
		ack, err := cms.AcknowledgeOpened(o, name, cred.Signer, cred.Chain, cms.AckOptions{})
		if err != nil {
			return nil, fmt.Errorf("acknowledge %s: %w", in, err)
		}
		if _, err := ackFile.Write(ack); err != nil {
			return nil, fmt.Errorf("write %s: %w", opts.AckOut, err)
		}
		res.AckWritten = true
	}
	if err := interrupted(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %w", in, err)
	}
	if err := commitAll(dst, ackFile); err != nil {
		return nil, err
	}
	c.log.Info("opened", "in", in, "out", out, "from", from, "size", o.Size, "format", string(format), "ack", opts.AckOut)
	return res, nil
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
	DocumentLen int64
}

// VerifyAck checks the signed file acknowledgement in ack against the
// message we sent: original is either the protected file (encrypted to us
// too by Protect) or the SignedData we kept, in any of the formats Open
// reads, streamed. It proves the partner received and decrypted exactly
// that document.
func (c *Client) VerifyAck(ctx context.Context, ack, original string) (*AckResult, error) {
	ackDER, err := readInput(ack)
	if err != nil {
		return nil, err
	}
	if ackDER, err = unarmorAll(ackDER); err != nil {
		return nil, fmt.Errorf("acknowledgement %s: %w", ack, err)
	}
	cred, err := c.credential()
	if err != nil {
		return nil, err
	}
	src, _, err := openInput(original)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	msg, _, err := cms.Unarmor(ctxReader{ctx: ctx, r: src})
	if err != nil {
		return nil, fmt.Errorf("original %s: %w", original, err)
	}
	br := bufio.NewReader(msg)
	head, _ := br.Peek(32)
	// Our own signature on the original.
	oo := cms.OpenOptions{Verify: cms.VerifyOptions{Registered: []*x509.Certificate{cred.Certificate()}},
		DocumentHashes: []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}, MaxSize: DefaultMaxOpen}
	var o *cms.Opened
	if isSignedData(head) {
		o, err = cms.OpenSignedStream(io.Discard, br, oo)
	} else {
		var key crypto.PrivateKey
		if key, err = decryptionKey(cred); err == nil {
			o, err = cms.OpenStream(io.Discard, br, cred.Certificate(), key, oo)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("original %s (must be a file you protected): %w", original, err)
	}
	vo, err := c.verifyOptions()
	if err != nil {
		return nil, err
	}
	a, err := cms.VerifyAcknowledgementOpened(ackDER, o, vo)
	if err != nil {
		return nil, fmt.Errorf("acknowledgement %s of %s: %w", ack, original, err)
	}
	by := c.whoIs(a.Signer.Certificate)
	c.log.Info("acknowledgement verified", "ack", ack, "original", original, "by", by)
	return &AckResult{By: by, FileName: a.FileName, FileSize: a.FileSize, FileHash: a.FileHash, FileDigest: a.FileDigest,
		SignedAt: a.SigningTime, ESSReceipt: len(a.ContentIdentifier) > 0, DocumentLen: o.Size}, nil
}

// unarmorAll decodes a small message held in memory (PEM, S/MIME or DER).
func unarmorAll(b []byte) ([]byte, error) {
	r, format, err := cms.Unarmor(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if format == cms.FormatDER {
		return b, nil
	}
	return io.ReadAll(io.LimitReader(r, MaxInput))
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
