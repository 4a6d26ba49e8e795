// Package cms implements the parts of the Cryptographic Message Syntax
// (RFC 5652) that e2sgate uses for business documents, interoperable with
// "openssl cms":
//
//   - SignedData (Sign, AddSigner, Verify): attached or detached content,
//     SHA-256/384/512, RSA PKCS#1 v1.5, RSA-PSS and ECDSA, with or without
//     the signer's certificates, signing through any crypto.Signer.
//     Verification builds the chain to trust roots or accepts a registered
//     certificate, and checks validity, key usage and revocation.
//
// The package is written directly on encoding/asn1 and
// golang.org/x/crypto/cryptobyte; BER input (indefinite lengths, chunked
// OCTET STRINGs, as written by streaming encoders) is converted to DER before
// parsing. Output is DER. SignerInfos keep their order in the SET, since the
// order records who signed first (merchant, buyer, merchant again).
//
// Errors wrap the sentinels in errors.go.
package cms
