// Package cms implements the parts of the Cryptographic Message Syntax
// (RFC 5652) that e2sgate uses for business documents, interoperable with
// "openssl cms" (checked both ways by the tests for every format openssl
// has).
//
// # Signing
//
// Sign writes SignedData, attached or detached, with SHA-256/384/512 and
// RSA PKCS#1 v1.5, RSA-PSS or ECDSA, through any crypto.Signer, with or
// without the signer's certificates. AddSigner adds another SignerInfo over
// the same content (offer, acceptance and contract: merchant, buyer,
// merchant again); CounterSign adds an RFC 5652 §11.4 countersignature over
// one signer's signature value. Verify checks every signer (and
// countersigner): message digest, signature, then trust, either a chain to
// VerifyOptions.Roots (extended key usage, validity) or a
// VerifyOptions.Registered certificate (validity), plus key usage and
// revocation (CRLs or a callback).
//
// # Encryption
//
// Encrypt writes AuthEnvelopedData with AES-256-GCM (RFC 5083/5084), or
// EnvelopedData with AES-256-CBC, for any number of recipients: RSA keys get
// RSAES-OAEP with SHA-256 and an explicit MGF1-SHA-256 parameter; EC keys
// (P-256, P-384) get ephemeral-static ECDH, dhSinglePass-stdDH-sha256kdf-scheme
// and AES-256 key wrap (RFC 5753). Decrypt also reads RSA PKCS#1 v1.5 and
// the SHA-1/384/512 KDF variants openssl writes, and takes the private key
// as a crypto.Decrypter (RSA) or a KeyAgreer (ECDH; *ecdh.PrivateKey and
// *ecdsa.PrivateKey work), so keys may live in a token. RSA-OAEP parameters
// naming SHA-256 but leaving MGF1 at its SHA-1 default are refused
// (ErrMissingMGF1).
//
// RFC 5083 requires authAttrs (used as GCM additional data) when the
// encrypted content is not id-data, so Protect's AuthEnvelopedData carries
// a contentType attribute there. openssl releases before the fix for
// openssl issue #26101 (3.0.19 among them) mis-tag authAttrs and cannot
// parse such messages; for those peers use AES256CBC, which they read.
//
// # Compression and nesting
//
// Compress and Decompress handle CompressedData (RFC 3274, zlib), with a
// bound on the inflated size. Protect nests them as the RFCs define:
// (Auth)EnvelopedData of id-signedData, whose eContentType is
// id-ct-compressedData over id-data. Open reverses it and refuses
// encrypted content that is not signed.
//
// # Signed file acknowledgement
//
// The recipient of a document answers with a signed acknowledgement
// (Acknowledge), which the sender checks with VerifyAcknowledgement
// against the SignedData it sent (Protected.SignedData) and the document.
// It is SignedData signed by the recipient, with this content:
//
//	Receipt ::= SEQUENCE {                     -- RFC 2634 §2.8
//	  version                  INTEGER (1),
//	  contentType              OBJECT IDENTIFIER, -- original eContentType
//	  signedContentIdentifier  OCTET STRING,      -- from the receipt request; empty if none
//	  originatorSignatureValue OCTET STRING }     -- original SignerInfo signature
//
// The eContentType is id-ct-receipt (1.2.840.113549.1.9.16.1.1) when the
// original carried an RFC 2634 receiptRequest (SignOptions.ReceiptRequest);
// the acknowledgement is then a valid ESS signed receipt that
// "openssl cms -verify_receipt ack.der -rctform DER -in original.der
// -inform DER -CAfile ca.pem" accepts. Without a request RFC 2634 forbids
// a receipt, so the same Receipt syntax is carried as id-data.
//
// Signed attributes, besides contentType, messageDigest and signingTime:
//
//	msgSigDigest (1.2.840.113549.1.9.16.2.5)  OCTET STRING
//	    digest, with the original signer's digest algorithm, of the DER of
//	    the original SignerInfo's signedAttrs: binds the acknowledgement to
//	    exactly that signature (RFC 2634 §2.7).
//	fileName   (2.25.15164122438737808793471905286953962367.1) UTF8String
//	fileSize   (2.25.15164122438737808793471905286953962367.2) INTEGER
//	fileDigest (2.25.15164122438737808793471905286953962367.3)
//	    SEQUENCE { digestAlgorithm AlgorithmIdentifier, digest OCTET STRING }
//	    over the decrypted, decompressed document, with the
//	    acknowledgement's digest algorithm.
//
// The private attributes live under a UUID arc (2.25, ITU-T X.667), which
// needs no registration. SignReceipt and VerifyReceipt handle plain RFC 2634
// receipts without the file attributes.
//
// # Header signatures
//
// SignHeader and VerifyHeader implement request body signatures for the
// HeaderSignature header: a detached SignedData with SHA-512, no
// certificates, standard base64 on one line, over the exact body bytes,
// verified only against the client's registered certificate, which must be
// valid and not revoked.
//
// # Encoding
//
// The package is written directly on golang.org/x/crypto/cryptobyte and
// encoding/asn1: the Go CMS libraries (smallstep/pkcs7,
// github/smimesign/ietf-cms) lack RSA-PSS, AuthEnvelopedData, ECDH key
// agreement and CompressedData, and patching them would be larger than this
// package. BER input (indefinite lengths and chunked OCTET STRINGs, as
// written by "openssl cms -stream") is converted to DER before parsing.
// Output is DER, except that SignerInfos keep their order in the SET
// because the order records who signed first.
//
// Errors wrap the sentinels in errors.go once per layer.
package cms
