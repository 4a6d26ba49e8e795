package client

import (
	"errors"

	"github.com/e2sgate/e2sgate/internal/document/certstore"
	"github.com/e2sgate/e2sgate/internal/document/cms"
	"github.com/e2sgate/e2sgate/internal/document/envelope"
	"github.com/e2sgate/e2sgate/internal/document/keystore"
)

var (
	// ErrConfig means the configuration file is missing or refused.
	ErrConfig = errors.New("invalid configuration")
	// ErrConfigExists means e2s init found a configuration file already.
	ErrConfigExists = errors.New("configuration file exists")
	// ErrNoSecret means the keystore password or token PIN is not available.
	ErrNoSecret = errors.New("keystore password not available")
	// ErrUsage means a command was given wrong arguments.
	ErrUsage = errors.New("usage")
	// ErrNotSigned means an encrypted file holds no signed document.
	ErrNotSigned = errors.New("encrypted content is not a signed document")
	// ErrWrongSender means a document is signed by someone other than the
	// partner the caller expected.
	ErrWrongSender = errors.New("document signed by another partner")
	// ErrNoInput means an input file does not exist.
	ErrNoInput = errors.New("no such input file")
	// ErrOutputDir means an output's directory does not exist.
	ErrOutputDir = errors.New("no such directory for the output")
	// ErrOutputExists means an output file exists and -force was not given.
	ErrOutputExists = errors.New("output file exists")
	// ErrImportPassword means a PKCS#12 file's own password is wrong.
	ErrImportPassword = errors.New("wrong password for the PKCS#12 file")
	// ErrNotTRISA means an envelope's payload is not a TRISA Payload.
	ErrNotTRISA = errors.New("payload is not a TRISA identity and transaction")
	// ErrInterrupted means the work was stopped (Ctrl-C, SIGTERM).
	ErrInterrupted = errors.New("interrupted")
	// ErrBadInput means an input file is not of the expected kind.
	ErrBadInput = errors.New("input is not of the expected kind")
)

// hints say what to do next, for the first matching error; order matters
// where an error wraps several sentinels.
var hints = []struct {
	err  error
	hint string
}{
	{ErrConfigExists, "keep it and go on with 'e2s keygen', edit it, or write another with 'e2s -config FILE init'"},
	{ErrConfig, "run 'e2s init' to write a default one, or fix the configuration file (see cmd/e2s/README.md), or pass -config FILE"},
	{ErrNoSecret, "provide the keystore password as the config's keystore section names it (by default: export E2S_PASSWORD=...)"},
	{ErrImportPassword, "put the PKCS#12 file's password in the variable -password-env names (without -password-env it must equal the keystore's password)"},
	{ErrInterrupted, "stopped before the end: no output was written and an existing file is unchanged; run the command again"},
	{ErrNoInput, "check the input file's name and path ('-' reads standard input)"},
	{ErrOutputDir, "create that directory first, or give an output path in an existing directory"},
	{ErrOutputExists, "choose another output name, or add -force to replace the file (it is replaced only when the new one is complete)"},
	{keystore.ErrWrongPassword, "the keystore password (or token PIN) is wrong: check the variable or file the config's keystore section names"},
	{keystore.ErrNotFound, "create the credential with 'e2s keygen', or set credential: in the config to a label 'e2s keystore list' shows"},
	{keystore.ErrExists, "that label is taken: choose another -label, or use the existing credential"},
	{keystore.ErrNotDecrypter, "this needs an RSA credential: make one with 'e2s keygen -type rsa-3072'"},
	{keystore.ErrUnsupported, "the keystore backend cannot do this; see cmd/e2s/README.md"},
	{certstore.ErrUntrusted, "check the partner's certificate fingerprint out of band, then set certstore.trust_on_first_use: true or add their CA under certstore.roots; or swap certificates as files ('e2s cert export', 'e2s certstore add ID CERT.pem')"},
	{certstore.ErrCertificateChanged, "the partner presented a new certificate: confirm it with them out of band, then 'e2s certstore add ID CERT.pem'"},
	{certstore.ErrIdentityMismatch, "the certificate does not name that partner id; check the id, or ask the partner for a certificate with that name"},
	{certstore.ErrStale, "the message is too old or the clocks differ; check the clock and run the exchange again"},
	{certstore.ErrUnexpectedMessage, "this file does not answer that request; check you passed the matching request and answer"},
	{certstore.ErrRevoked, "the partner's certificate is revoked: get a new one by 'e2s exchange' or 'e2s certstore add'"},
	{cms.ErrCertificateRevoked, "the signer's certificate is revoked: do not trust this file; get the partner's new certificate"},
	{certstore.ErrNotFound, "add the partner's certificate with 'e2s certstore add ID CERT.pem', or run 'e2s exchange request -to ID'"},
	{certstore.ErrInvalidID, "partner ids are letters, digits, '.', '_' and '-'"},
	{certstore.ErrExpired, "the certificate is expired or not yet valid: check the clock, or get a renewed certificate"},
	{cms.ErrCertificateExpired, "a certificate is expired or not yet valid: check the clock, or get a renewed certificate"},
	{cms.ErrNotRecipient, "this file is not encrypted for your credential: send the sender your certificate ('e2s cert export') and ask them to protect it again"},
	{cms.ErrSignerNotFound, "the signer is not in your certstore: exchange certificates ('e2s exchange') or 'e2s certstore add' theirs"},
	{cms.ErrUntrusted, "the signer is not in your certstore: exchange certificates ('e2s exchange') or 'e2s certstore add' theirs"},
	{cms.ErrNoTrustAnchor, "your certstore is empty: exchange certificates ('e2s exchange') or 'e2s certstore add' a partner's"},
	{ErrWrongSender, "the file is not from the partner you named: do not use it"},
	{cms.ErrAcknowledgement, "the acknowledgement is not for this document: ask the recipient to open exactly this file and acknowledge it again"},
	{cms.ErrReceipt, "the acknowledgement is not for this document: ask the recipient to open exactly this file and acknowledge it again"},
	{cms.ErrDecrypt, "the file was altered or damaged in transit: do not use it, ask the sender to send it again"},
	{cms.ErrDigestMismatch, "the content was altered after signing: do not use it, ask the sender to send it again"},
	{cms.ErrBadSignature, "the signature does not verify: the content was altered or signed by another key; do not use it"},
	{cms.ErrDecompress, "the document does not decompress (damaged, or larger than allowed): ask the sender to send it again"},
	{cms.ErrMissingMGF1, "the sender's software writes faulty RSA-OAEP parameters: ask them to upgrade or use PKCS#1 v1.5"},
	{ErrNotSigned, "refusing an unsigned document: ask the sender to sign and encrypt it ('e2s protect')"},
	{cms.ErrNotSigned, "refusing an unsigned document: ask the sender to sign and encrypt it ('e2s protect', or openssl cms -sign then -encrypt)"},
	{cms.ErrNoContent, "this is a detached signature: give the signed file as well (for a header signature: 'e2s verify-header -from PARTNER FILE VALUE')"},
	{cms.ErrUnexpectedContentType, "this is not a file of that kind: check you gave the right file"},
	{cms.ErrMalformed, "the file is truncated or not of the expected kind: check you gave the right file, or ask for it again"},
	{cms.ErrUnsupportedAlgorithm, "e2s does not support what the message above names: ask the sender to use what e2s reads (AES-256-GCM or AES-256-CBC; SHA-256/384/512; RSA or ECDSA P-256/P-384/P-521; zlib)"},
	{cms.ErrUnsupportedKey, "the credential's key type cannot do this; an RSA credential can do everything"},
	{envelope.ErrWrongKey, "the envelope is sealed to another key: unseal it with the credential whose public key sealed it"},
	{envelope.ErrHMACMismatch, "the envelope was altered or damaged: do not use it"},
	{envelope.ErrDecrypt, "the envelope was altered or damaged: do not use it"},
	{envelope.ErrState, "this envelope is not sealed (or is an error envelope): check you gave the right file"},
	{envelope.ErrMalformed, "the file is truncated or not a sealed envelope: check you gave the right file"},
	{envelope.ErrUnsupportedAlgorithm, "sealing needs an RSA public key (PEM PUBLIC KEY or CERTIFICATE)"},
	{ErrNotTRISA, "this envelope holds other data (a record sealed with plain 'e2s seal'): open it with 'e2s unseal IN OUT'"},
	{ErrBadInput, "check you gave the right file"},
	{ErrUsage, "run 'e2s help' for the commands and their arguments"},
}

// Hint says what to do after err, or "" when there is nothing specific.
func Hint(err error) string {
	for _, h := range hints {
		if errors.Is(err, h.err) {
			return h.hint
		}
	}
	return ""
}
