package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"time"
)

// HeaderSignature is the HTTP header that carries a request body signature.
const HeaderSignature = "E2s-Signature"

// maxHeaderSignature bounds the accepted header value (base64 characters).
const maxHeaderSignature = 16 << 10

// SignHeader signs a request body for the HeaderSignature header: a
// detached CMS SignedData with SHA-512, the signer's certificate left out,
// over exactly body, in standard base64 on one line. The receiver checks it
// against the client's registered certificate (VerifyHeader), or with
// "openssl cms -verify -binary -inform DER -content body -certfile cert.pem".
func SignHeader(body []byte, key crypto.Signer, cert *x509.Certificate) (string, error) {
	return SignHeaderStream(bytes.NewReader(body), key, cert)
}

// SignHeaderStream is SignHeader over a body read from r (a large file):
// only its SHA-512 digest is kept. The value is DER, as SignHeader's.
func SignHeaderStream(r io.Reader, key crypto.Signer, cert *x509.Certificate) (string, error) {
	h := crypto.SHA512.New()
	if _, err := copyBuf(h, r); err != nil {
		return "", fmt.Errorf("sign header: %w", err)
	}
	sum := h.Sum(nil)
	opts := SignOptions{Hash: crypto.SHA512, Detached: true, OmitCertificates: true}
	sd := &signedData{contentType: oidData}
	si, err := newSignerInfoDigest(func(crypto.Hash) ([]byte, error) { return sum, nil }, oidData, key, []*x509.Certificate{cert}, &opts)
	if err != nil {
		return "", fmt.Errorf("sign header: %w", err)
	}
	sd.addDigestAlgorithm(si.digestAlg)
	sd.signerInfos = append(sd.signerInfos, *si)
	return base64.StdEncoding.EncodeToString(sd.encode()), nil
}

// HeaderVerifyOptions controls VerifyHeader.
type HeaderVerifyOptions struct {
	// CurrentTime is the time for the validity check; zero means now.
	CurrentTime time.Time
	// CRLs are trusted revocation lists (see VerifyOptions.CRLs).
	CRLs []*x509.RevocationList
	// CheckRevocation refuses revoked certificates (see VerifyOptions.CheckRevocation).
	CheckRevocation func(cert *x509.Certificate, chain []*x509.Certificate) error
}

// VerifyHeader checks a HeaderSignature value over body against the
// client's registered certificate: exactly one signer, SHA-512, detached,
// signed by registered, which must be within its validity period and not
// revoked. Certificates embedded in the signature are ignored.
func VerifyHeader(value string, body []byte, registered *x509.Certificate, opts HeaderVerifyOptions) (*SignerInfo, error) {
	return VerifyHeaderStream(value, bytes.NewReader(body), registered, opts)
}

// VerifyHeaderStream is VerifyHeader over a body read from r. The value is
// checked before the body is read.
func VerifyHeaderStream(value string, body io.Reader, registered *x509.Certificate, opts HeaderVerifyOptions) (*SignerInfo, error) {
	if registered == nil {
		return nil, fmt.Errorf("verify header: %w", ErrNoTrustAnchor)
	}
	if len(value) > maxHeaderSignature {
		return nil, fmt.Errorf("verify header: %w: %d bytes", ErrMalformed, len(value))
	}
	der, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("verify header: %w: base64: %v", ErrMalformed, err)
	}
	sd, err := parseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("verify header: %w", err)
	}
	if sd.hasContent {
		return nil, fmt.Errorf("verify header: %w: signature is not detached", ErrMalformed)
	}
	if len(sd.signerInfos) != 1 {
		return nil, fmt.Errorf("verify header: %w: %d signers, want 1", ErrMalformed, len(sd.signerInfos))
	}
	if h, err := hashFromAlgorithm(sd.signerInfos[0].digestAlg); err != nil || h != crypto.SHA512 {
		return nil, fmt.Errorf("verify header: %w: digest must be SHA-512", ErrUnsupportedAlgorithm)
	}
	sd.certs = nil // only the registered certificate counts
	h := crypto.SHA512.New()
	if _, err := copyBuf(h, body); err != nil {
		return nil, fmt.Errorf("verify header: %w", err)
	}
	sum := h.Sum(nil)
	signed, err := sd.verifyDigest(VerifyOptions{
		Registered:      []*x509.Certificate{registered},
		CurrentTime:     opts.CurrentTime,
		CRLs:            opts.CRLs,
		CheckRevocation: opts.CheckRevocation,
	}, func(h crypto.Hash) ([]byte, error) {
		if h != crypto.SHA512 {
			return nil, fmt.Errorf("%w: digest must be SHA-512", ErrUnsupportedAlgorithm)
		}
		return sum, nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify header: %w", err)
	}
	return &signed.Signers[0], nil
}
