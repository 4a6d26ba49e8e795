package cms

import "errors"

// Sentinel errors. Every error returned by this package wraps at most one of
// these, so callers can map a failure to a reason with errors.Is.
var (
	// ErrMalformed means the input is not valid DER/BER for the expected structure.
	ErrMalformed = errors.New("cms: malformed message")
	// ErrUnexpectedContentType means the ContentInfo holds another content type.
	ErrUnexpectedContentType = errors.New("cms: unexpected content type")
	// ErrUnsupportedAlgorithm means an algorithm or parameter set this package does not implement.
	ErrUnsupportedAlgorithm = errors.New("cms: unsupported algorithm")
	// ErrUnsupportedKey means the key type cannot be used for the requested operation.
	ErrUnsupportedKey = errors.New("cms: unsupported key type")
	// ErrNoContent means a detached signature was given no content to check.
	ErrNoContent = errors.New("cms: no content for detached signature")
	// ErrNoSigners means the SignedData has no SignerInfo.
	ErrNoSigners = errors.New("cms: no signers")
	// ErrSignerNotFound means no certificate matches a SignerInfo's identifier.
	ErrSignerNotFound = errors.New("cms: signer certificate not found")
	// ErrDigestMismatch means the content does not match the signed message digest.
	ErrDigestMismatch = errors.New("cms: message digest mismatch")
	// ErrBadSignature means a signature value does not verify.
	ErrBadSignature = errors.New("cms: bad signature")
	// ErrMissingAttribute means a required signed attribute is absent.
	ErrMissingAttribute = errors.New("cms: missing signed attribute")
	// ErrUntrusted means the signer's certificate does not chain to a trust root
	// or is not the registered certificate.
	ErrUntrusted = errors.New("cms: signer not trusted")
	// ErrCertificateExpired means a certificate is outside its validity period.
	ErrCertificateExpired = errors.New("cms: certificate expired or not yet valid")
	// ErrCertificateRevoked means a certificate is revoked.
	ErrCertificateRevoked = errors.New("cms: certificate revoked")
	// ErrKeyUsage means a certificate's key usage does not allow the operation.
	ErrKeyUsage = errors.New("cms: certificate key usage does not allow this operation")
	// ErrNoTrustAnchor means VerifyOptions named neither roots nor registered certificates.
	ErrNoTrustAnchor = errors.New("cms: no trust roots or registered certificates given")
	// ErrNoRecipients means encryption was asked for without recipients.
	ErrNoRecipients = errors.New("cms: no recipients")
	// ErrNotRecipient means no RecipientInfo is addressed to the given key or certificate.
	ErrNotRecipient = errors.New("cms: not a recipient of this message")
	// ErrDecrypt means the content-encryption key could not be recovered or the
	// ciphertext or its authentication tag is corrupt.
	ErrDecrypt = errors.New("cms: decryption failed")
	// ErrMissingMGF1 means RSAES-OAEP parameters name a hash other than SHA-1
	// but leave the MGF1 hash to its SHA-1 default, a known interoperability bug.
	ErrMissingMGF1 = errors.New("cms: RSA-OAEP parameters omit the MGF1 hash")
	// ErrDecompress means CompressedData could not be inflated or is too large.
	ErrDecompress = errors.New("cms: decompression failed")
	// ErrReceipt means a signed receipt does not match the original message.
	ErrReceipt = errors.New("cms: receipt does not match the original message")
	// ErrNoReceiptRequest means the original message did not request a receipt.
	ErrNoReceiptRequest = errors.New("cms: no receipt request in the original message")
	// ErrNotSigned means an encrypted message holds no signed document.
	ErrNotSigned = errors.New("cms: encrypted content is not a signed document")
	// ErrAcknowledgement means a file acknowledgement does not match the document.
	ErrAcknowledgement = errors.New("cms: acknowledgement does not match the document")
)
