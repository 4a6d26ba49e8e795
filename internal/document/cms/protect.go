package cms

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"

	"github.com/klauspost/compress/zlib"
)

// ProtectOptions controls Protect.
type ProtectOptions struct {
	// Sign controls the signature; Detached is ignored (the signature always
	// carries the content).
	Sign SignOptions
	// Encrypt controls the encryption.
	Encrypt EncryptOptions
	// NoCompression signs the content directly instead of CompressedData.
	NoCompression bool
}

// Protected is the result of ProtectDocument.
type Protected struct {
	// Message is the DER ContentInfo to send.
	Message []byte
	// SignedData is the DER ContentInfo(SignedData) inside the encryption;
	// the sender keeps it to check the recipient's acknowledgement.
	SignedData []byte
}

// Protect compresses, signs and encrypts a document, nesting the CMS types
// as RFC 5652 and RFC 3274 define: AuthEnvelopedData (or EnvelopedData)
// whose encrypted content type is id-signedData, whose eContentType is
// id-ct-compressedData over id-data.
func Protect(content []byte, key crypto.Signer, chain, recipients []*x509.Certificate, opts ProtectOptions) ([]byte, error) {
	p, err := ProtectDocument(content, key, chain, recipients, opts)
	if err != nil {
		return nil, err
	}
	return p.Message, nil
}

// ProtectDocument is Protect that also returns the inner SignedData.
func ProtectDocument(content []byte, key crypto.Signer, chain, recipients []*x509.Certificate, opts ProtectOptions) (*Protected, error) {
	inner, innerType := content, oidData
	if !opts.NoCompression {
		ci, err := compress(content, oidData)
		if err != nil {
			return nil, fmt.Errorf("protect: compress: %w", err)
		}
		if inner, err = expectContentInfo(ci, oidCompressedData); err != nil {
			return nil, fmt.Errorf("protect: %w", err)
		}
		innerType = oidCompressedData
	}
	so := opts.Sign
	so.Detached = false
	so.contentType = innerType
	signedCI, err := Sign(inner, key, chain, so)
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	signed, err := expectContentInfo(signedCI, oidSignedData)
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	eo := opts.Encrypt
	eo.contentType = oidSignedData
	der, err := encrypt(signed, recipients, &eo)
	if err != nil {
		return nil, fmt.Errorf("protect: encrypt: %w", err)
	}
	return &Protected{Message: der, SignedData: signedCI}, nil
}

// OpenOptions controls Open.
type OpenOptions struct {
	// Verify checks the signature; Content is ignored.
	Verify VerifyOptions
	// MaxSize bounds the decompressed size (DefaultMaxDecompressed if <= 0).
	MaxSize int64
	// DocumentHashes are the digests OpenStream computes over the document
	// (Opened.DocumentDigest); empty means SHA-256.
	DocumentHashes []crypto.Hash
}

// Opened is the result of Open.
type Opened struct {
	// Content is the document.
	Content []byte
	// Signed describes the verified signature; Signed.Content is the signed
	// (possibly compressed) inner content.
	Signed *Signed
	// SignedData is the DER ContentInfo(SignedData) found inside the
	// encryption: the original message that a receipt or an
	// acknowledgement refers to.
	SignedData []byte
	// Compressed reports whether the signed content was CompressedData.
	Compressed bool
	// Size is the document's size.
	Size int64
	// AsData reports the nesting "openssl cms -sign | openssl cms -encrypt"
	// writes: the SignedData ContentInfo encrypted as id-data.
	AsData bool

	sd      *signedData // SignedData without content (OpenStream)
	digests map[crypto.Hash][]byte
}

// Open reverses Protect: it decrypts with the recipient's key (see Decrypt),
// verifies the signature and decompresses. The encrypted content must be
// SignedData, so that an unsigned document is never accepted.
func Open(der []byte, cert *x509.Certificate, key crypto.PrivateKey, opts OpenOptions) (*Opened, error) {
	ct, signed, err := decrypt(der, cert, key)
	if err != nil {
		return nil, fmt.Errorf("open: decrypt: %w", err)
	}
	if !ct.Equal(oidSignedData) {
		return nil, fmt.Errorf("open: %w: encrypted %v, want signed data", ErrUnexpectedContentType, ct)
	}
	out := &Opened{SignedData: contentInfo(oidSignedData, signed)}
	vo := opts.Verify
	vo.Content = nil
	if out.Signed, err = Verify(out.SignedData, vo); err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	switch ct := out.Signed.ContentType; {
	case ct.Equal(oidData):
		out.Content = out.Signed.Content
	case ct.Equal(oidCompressedData):
		var innerType asn1.ObjectIdentifier
		innerType, out.Content, err = decompress(contentInfo(oidCompressedData, out.Signed.Content), opts.MaxSize)
		if err != nil {
			return nil, fmt.Errorf("open: decompress: %w", err)
		}
		if !innerType.Equal(oidData) {
			return nil, fmt.Errorf("open: %w: compressed %v", ErrUnexpectedContentType, innerType)
		}
		out.Compressed = true
	default:
		return nil, fmt.Errorf("open: %w: signed %v", ErrUnexpectedContentType, ct)
	}
	return out, nil
}

// ProtectStreamOptions controls ProtectStream.
type ProtectStreamOptions struct {
	ProtectOptions
	// AutoCompress compresses only when a sample of the document (its first
	// CompressSample bytes) shrinks by at least a tenth; NoCompression
	// still turns compression off.
	AutoCompress bool
	// OpenSSLNesting encrypts the SignedData ContentInfo as id-data, the
	// nesting "openssl cms -sign | openssl cms -encrypt" writes, so that
	// "openssl cms -decrypt | openssl cms -verify" reads the message
	// (RFC 5652 allows it; the receiver learns that the content is signed
	// only by parsing it). Open and OpenStream read both nestings.
	OpenSSLNesting bool
	// Keep, if set, also receives the inner ContentInfo(SignedData) (signed,
	// not encrypted), what VerifyAcknowledgement needs as the original.
	Keep io.Writer
}

// StreamProtected describes what ProtectStream wrote.
type StreamProtected struct {
	// Size is the document's size.
	Size int64
	// Compressed reports whether the document was compressed.
	Compressed bool
}

// CompressSample is how much of a document AutoCompress tries.
const CompressSample = 256 << 10

// ProtectStream is Protect over streams: it reads the document from r and
// writes the BER message to w (indefinite lengths, content in ChunkSize
// pieces), in memory independent of the document's size.
func ProtectStream(w io.Writer, r io.Reader, key crypto.Signer, chain, recipients []*x509.Certificate, opts ProtectStreamOptions) (*StreamProtected, error) {
	res, err := protectStream(w, r, key, chain, recipients, opts)
	if err != nil {
		return nil, fmt.Errorf("protect: %w", err)
	}
	return res, nil
}

func protectStream(w io.Writer, r io.Reader, key crypto.Signer, chain, recipients []*x509.Certificate, opts ProtectStreamOptions) (*StreamProtected, error) {
	res := &StreamProtected{Compressed: !opts.NoCompression}
	if res.Compressed && opts.AutoCompress {
		sample := make([]byte, CompressSample)
		n, err := io.ReadFull(r, sample)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, err
		}
		sample = sample[:n]
		res.Compressed = compresses(sample)
		r = io.MultiReader(bytes.NewReader(sample), r)
	}
	bw := bufio.NewWriterSize(w, ChunkSize)
	envType := oidAuthEnvelopedData
	if opts.Encrypt.Cipher == AES256CBC {
		envType = oidEnvelopedData
	}
	if err := startContentInfo(bw, envType); err != nil {
		return nil, err
	}
	eo := opts.Encrypt
	eo.contentType = oidSignedData
	if opts.OpenSSLNesting {
		eo.contentType = oidData
	}
	enc, err := newEncryptWriter(bw, recipients, &eo)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	var signedOut io.Writer = enc
	if opts.OpenSSLNesting {
		if err := startContentInfo(enc, oidSignedData); err != nil {
			return nil, err
		}
	}
	if opts.Keep != nil {
		if err := startContentInfo(opts.Keep, oidSignedData); err != nil {
			return nil, err
		}
		signedOut = io.MultiWriter(enc, opts.Keep)
	}
	so := opts.Sign
	so.Detached = false
	innerType := oidData
	if res.Compressed {
		innerType = oidCompressedData
	}
	sw, err := newSignWriter(signedOut, innerType, key, chain, so)
	if err != nil {
		return nil, err
	}
	var doc io.WriteCloser = sw
	var cw *compressWriter
	if res.Compressed {
		if cw, err = newCompressWriter(sw); err != nil {
			return nil, err
		}
		doc = cw
	}
	if res.Size, err = copyBuf(doc, r); err != nil {
		return nil, err
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return nil, err
		}
	}
	if err := sw.Close(); err != nil {
		return nil, err
	}
	if opts.Keep != nil {
		if err := endContentInfo(opts.Keep); err != nil {
			return nil, err
		}
	}
	if opts.OpenSSLNesting {
		if err := endContentInfo(enc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if err := endContentInfo(bw); err != nil {
		return nil, err
	}
	return res, bw.Flush()
}

// compresses reports whether zlib at its fastest level shrinks sample by
// at least a tenth (random or already compressed data does not).
func compresses(sample []byte) bool {
	if len(sample) < 64 {
		return false
	}
	var c countWriter
	c.w = io.Discard
	z, err := zlib.NewWriterLevel(&c, zlib.BestSpeed)
	if err != nil {
		return true
	}
	z.Write(sample)
	z.Close()
	return c.n*10 < int64(len(sample))*9
}
