package cms

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
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
