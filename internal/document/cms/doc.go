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
// # Streams
//
// SignStream, VerifyStream, EncryptStream, DecryptStream, CompressStream,
// DecompressStream, ProtectStream, OpenStream and OpenSignedStream do the
// same over io.Reader and io.Writer in memory that does not grow with the
// content (a few ChunkSize buffers; elements other than content, such as
// certificates and recipient infos, are held whole up to 4 MiB each). They
// write BER: indefinite lengths around content of unknown size, content as
// a constructed OCTET STRING of ChunkSize pieces, everything else DER, as
// "openssl cms -stream" does; they read definite and indefinite forms
// alike, from us, openssl or anyone. Unarmor detects DER/BER, PEM
// ("-----BEGIN CMS-----" or PKCS7) and S/MIME (openssl's default output)
// and decodes base64 as it is read.
//
// A streaming reader writes the content before it has seen the end of the
// message, where the GCM tag and the signatures are. AES-GCM is computed
// piecewise (gcmstream.go: crypto/cipher's counter mode and, for GHASH,
// crypto/cipher's GCM over chunks joined by GHASH's linearity, checked
// against crypto/cipher's GCM at every boundary), not as a chunked
// construction: AuthEnvelopedData has one tag over the whole content, and
// a chunked format would not be what peers read. So unauthenticated
// plaintext is passed on, and the rule is: what a streaming reader wrote
// is provisional until it returns nil. Package client writes it to a
// temporary file beside the output and renames it into place only after
// the tag and every signature have been checked; on any error the
// temporary file is removed. When GCM content fails to parse, the reader
// reads on to the tag and reports a tag mismatch (ErrDecrypt) if there is
// one, so that an altered message reads as altered, not as malformed.
//
// ProtectStreamOptions.AutoCompress compresses only when the first
// CompressSample bytes shrink by a tenth at zlib's fastest level, so random
// or already compressed data is not compressed for nothing and a peer
// without zlib (openssl as Debian builds it) reads what does not need it.
// OpenSSLNesting encrypts the SignedData ContentInfo as id-data, the nesting
// "openssl cms -sign | openssl cms -encrypt" writes: "openssl cms -decrypt"
// then yields a ContentInfo that "openssl cms -verify" reads (with RFC
// 5652's nesting it yields the bare SignedData, which openssl cannot
// verify). Without authAttrs it also suits openssl 3.0 with AES-256-GCM.
// Version numbers, which nothing authenticates, must be the ones RFC 5652
// and RFC 5083 define.
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
// needs no registration.
//
// An original signed without signed attributes ("openssl cms -sign
// -noattr") has no signedAttrs for msgSigDigest to cover: its
// acknowledgement leaves msgSigDigest out and is bound to the original by
// originatorSignatureValue (the signature value, which covers the content
// digest) alone, as id-data (RFC 2634 receipts need signed attributes, so
// no ESS receipt is possible). VerifyAcknowledgement accepts exactly that
// and refuses a msgSigDigest there. AcknowledgeOpened and
// VerifyAcknowledgementOpened do the same for documents opened as streams,
// known by size and digest. SignReceipt and VerifyReceipt handle plain RFC 2634
// receipts without the file attributes.
//
// # Header signatures
//
// SignHeader and VerifyHeader implement request body signatures for the
// HeaderSignature header: a detached SignedData with SHA-512, no
// certificates, standard base64 on one line, over the exact body bytes,
// verified only against the client's registered certificate, which must be
// valid and not revoked. SignHeaderStream and VerifyHeaderStream read the
// body from a stream (a large file) and keep only its SHA-512.
//
// # Encoding
//
// The package is written directly on golang.org/x/crypto/cryptobyte and
// encoding/asn1: the Go CMS libraries (smallstep/pkcs7,
// github/smimesign/ietf-cms) lack RSA-PSS, AuthEnvelopedData, ECDH key
// agreement and CompressedData, and none streams; no maintained Go library
// reads or writes BER as a stream, so berstream.go does (a few hundred
// lines, fuzzed by FuzzStreamReaders). zlib is
// github.com/klauspost/compress/zlib (pinned in go.mod), faster than
// compress/zlib at the same format. The whole-message functions convert
// BER input (indefinite lengths and chunked OCTET STRINGs) to DER before
// parsing and write DER, except that SignerInfos keep their order in the
// SET because the order records who signed first.
//
// Errors wrap the sentinels in errors.go once per layer.
package cms
