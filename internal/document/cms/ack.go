package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// e2sArc is the private arc of this package's object identifiers, a UUID
// arc (ITU-T X.667, no registration needed):
// 2.25.15164122438737808793471905286953962367.
var e2sArc = func() []byte {
	// 2.25 encodes as the first byte 2*40+25 = 105; then the UUID integer in base 128.
	n, _ := new(big.Int).SetString("15164122438737808793471905286953962367", 10)
	return append([]byte{105}, base128(n)...)
}()

func base128(n *big.Int) []byte {
	var out []byte
	v := new(big.Int).Set(n)
	mask := big.NewInt(0x7f)
	for first := true; first || v.Sign() > 0; first = false {
		b := byte(new(big.Int).And(v, mask).Int64())
		if !first {
			b |= 0x80
		}
		out = append([]byte{b}, out...)
		v.Rsh(v, 7)
	}
	return out
}

func e2sOID(sub byte) []byte { return append(bytes.Clone(e2sArc), sub) }

var (
	// oidAttrFileName (arc.1): UTF8String, the document's file name.
	oidAttrFileName = e2sOID(1)
	// oidAttrFileSize (arc.2): INTEGER, the document's size in bytes.
	oidAttrFileSize = e2sOID(2)
	// oidAttrFileDigest (arc.3): DigestInfo-like SEQUENCE { AlgorithmIdentifier, OCTET STRING }
	// over the decrypted, decompressed document.
	oidAttrFileDigest = e2sOID(3)
)

// oidFileAck is the eContentType of an acknowledgement of a message that did
// not request an RFC 2634 receipt (RFC 2634 §2.3 forbids an unsolicited
// receipt): id-data, holding the same Receipt syntax.
var oidFileAck = oidData

// AckOptions controls Acknowledge.
type AckOptions struct {
	// Sign controls the acknowledgement's signature.
	Sign SignOptions
	// Verify verifies the original before acknowledging it.
	Verify VerifyOptions
}

// Acknowledge returns a signed file acknowledgement (see the package
// documentation) for document, which was received as the original SignedData
// (Opened.SignedData; for a detached original set opts.Verify.Content). The
// original is verified first. If the original requested an RFC 2634 receipt
// the acknowledgement is a signed receipt that "openssl cms -verify_receipt"
// checks; the file name, size and digest are signed attributes either way.
func Acknowledge(original, document []byte, fileName string, key crypto.Signer, chain []*x509.Certificate, opts AckOptions) ([]byte, error) {
	if !utf8.ValidString(fileName) {
		return nil, fmt.Errorf("acknowledge: %w: file name is not UTF-8", ErrMalformed)
	}
	h := opts.Sign.hash()
	alg, err := digestAlgorithm(h)
	if err != nil {
		return nil, fmt.Errorf("acknowledge: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		alg.add(b)
		b.AddASN1OctetString(digest(h, document))
	})
	fileDigest := b.BytesOrPanic()
	nameDER, err := asn1.MarshalWithParams(fileName, "utf8")
	if err != nil {
		return nil, fmt.Errorf("acknowledge: %w", err)
	}
	extra := []attribute{
		{typ: oidAttrFileName, values: [][]byte{nameDER}},
		{typ: oidAttrFileSize, values: [][]byte{mustMarshal(int64(len(document)))}},
		{typ: oidAttrFileDigest, values: [][]byte{fileDigest}},
	}
	der, err := signReceipt(original, opts.Verify, key, chain, opts.Sign, false, extra)
	if err != nil {
		return nil, fmt.Errorf("acknowledge: %w", err)
	}
	return der, nil
}

// AcknowledgeOpened is Acknowledge for a document opened by OpenStream
// (or Open): the original was verified while opening, and the document is
// known by its size and digest (opts.Sign.Hash must be among
// OpenOptions.DocumentHashes).
func AcknowledgeOpened(o *Opened, fileName string, key crypto.Signer, chain []*x509.Certificate, opts AckOptions) ([]byte, error) {
	der, err := acknowledgeOpened(o, fileName, key, chain, opts)
	if err != nil {
		return nil, fmt.Errorf("acknowledge: %w", err)
	}
	return der, nil
}

func acknowledgeOpened(o *Opened, fileName string, key crypto.Signer, chain []*x509.Certificate, opts AckOptions) ([]byte, error) {
	if !utf8.ValidString(fileName) {
		return nil, fmt.Errorf("%w: file name is not UTF-8", ErrMalformed)
	}
	sd := o.sd
	if sd == nil {
		var err error
		if sd, err = parseSignedData(o.SignedData); err != nil {
			return nil, fmt.Errorf("original: %w", err)
		}
	}
	h := opts.Sign.hash()
	alg, err := digestAlgorithm(h)
	if err != nil {
		return nil, err
	}
	dg, err := o.DocumentDigest(h)
	if err != nil {
		return nil, err
	}
	size := o.Size
	if o.Content != nil {
		size = int64(len(o.Content))
	}
	extra, err := fileAttributes(alg, dg, fileName, size)
	if err != nil {
		return nil, err
	}
	return signReceiptFor(sd, key, chain, opts.Sign, false, extra)
}

func fileAttributes(alg algorithmIdentifier, dg []byte, fileName string, size int64) ([]attribute, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		alg.add(b)
		b.AddASN1OctetString(dg)
	})
	nameDER, err := asn1.MarshalWithParams(fileName, "utf8")
	if err != nil {
		return nil, err
	}
	return []attribute{
		{typ: oidAttrFileName, values: [][]byte{nameDER}},
		{typ: oidAttrFileSize, values: [][]byte{mustMarshal(size)}},
		{typ: oidAttrFileDigest, values: [][]byte{b.BytesOrPanic()}},
	}, nil
}

// VerifyAcknowledgementOpened is VerifyAcknowledgement against a document
// opened by OpenStream (the sender's own copy), known by its size and
// digests (OpenOptions.DocumentHashes must include the acknowledgement's).
func VerifyAcknowledgementOpened(ack []byte, o *Opened, opts VerifyOptions) (*Acknowledgement, error) {
	r, attrs, err := verifyReceipt(ack, o.SignedData, opts, false)
	if err != nil {
		return nil, fmt.Errorf("verify acknowledgement: %w", err)
	}
	a := &Acknowledgement{Receipt: *r}
	if err := a.parseFileAttributes(attrs); err != nil {
		return nil, fmt.Errorf("verify acknowledgement: %w", err)
	}
	size := o.Size
	if o.Content != nil {
		size = int64(len(o.Content))
	}
	if a.FileSize != size {
		return nil, fmt.Errorf("verify acknowledgement: %w: size %d, sent %d", ErrAcknowledgement, a.FileSize, size)
	}
	dg, err := o.DocumentDigest(a.FileHash)
	if err != nil {
		return nil, fmt.Errorf("verify acknowledgement: %w", err)
	}
	if !bytes.Equal(a.FileDigest, dg) {
		return nil, fmt.Errorf("verify acknowledgement: %w: digest differs", ErrAcknowledgement)
	}
	return a, nil
}

// Acknowledgement describes a verified file acknowledgement.
type Acknowledgement struct {
	Receipt
	// FileName, FileSize and FileDigest (with FileHash) are as signed by the recipient.
	FileName   string
	FileSize   int64
	FileHash   crypto.Hash
	FileDigest []byte
}

// VerifyAcknowledgement verifies a file acknowledgement against the original
// SignedData the sender produced (Protected.SignedData) and the document
// sent: the acknowledgement's signature and trust (opts), its binding to the
// original signature (Receipt, msgSigDigest), and the document's size and
// digest. The file name is returned, not checked.
func VerifyAcknowledgement(ack, original, document []byte, opts VerifyOptions) (*Acknowledgement, error) {
	r, attrs, err := verifyReceipt(ack, original, opts, false)
	if err != nil {
		return nil, fmt.Errorf("verify acknowledgement: %w", err)
	}
	a := &Acknowledgement{Receipt: *r}
	if err := a.parseFileAttributes(attrs); err != nil {
		return nil, fmt.Errorf("verify acknowledgement: %w", err)
	}
	if a.FileSize != int64(len(document)) {
		return nil, fmt.Errorf("verify acknowledgement: %w: size %d, sent %d", ErrAcknowledgement, a.FileSize, len(document))
	}
	if !bytes.Equal(a.FileDigest, digest(a.FileHash, document)) {
		return nil, fmt.Errorf("verify acknowledgement: %w: digest differs", ErrAcknowledgement)
	}
	return a, nil
}

func (a *Acknowledgement) parseFileAttributes(attrs []attribute) error {
	name, ok, err := findAttribute(attrs, oidAttrFileName)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: file name", ErrMissingAttribute)
	}
	if rest, err := asn1.UnmarshalWithParams(name, &a.FileName, "utf8"); err != nil || len(rest) != 0 {
		return fmt.Errorf("%w: file name", ErrMalformed)
	}
	size, ok, err := findAttribute(attrs, oidAttrFileSize)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: file size", ErrMissingAttribute)
	}
	if rest, err := asn1.Unmarshal(size, &a.FileSize); err != nil || len(rest) != 0 || a.FileSize < 0 {
		return fmt.Errorf("%w: file size", ErrMalformed)
	}
	fd, ok, err := findAttribute(attrs, oidAttrFileDigest)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: file digest", ErrMissingAttribute)
	}
	s := cryptobyte.String(fd)
	var seq, d cryptobyte.String
	var alg algorithmIdentifier
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() || !readAlgorithmIdentifier(&seq, &alg) ||
		!seq.ReadASN1(&d, cbasn1.OCTET_STRING) || !seq.Empty() {
		return fmt.Errorf("%w: file digest", ErrMalformed)
	}
	if a.FileHash, err = hashFromAlgorithm(alg); err != nil {
		return err
	}
	a.FileDigest = []byte(d)
	return nil
}
