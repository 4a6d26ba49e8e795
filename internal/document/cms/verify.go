package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"
)

// VerifyOptions controls Verify. At least one of Roots, Registered or
// SkipTrust must be set.
type VerifyOptions struct {
	// Content is the signed content of a detached signature.
	Content []byte
	// Roots are the trust anchors for chain building.
	Roots *x509.CertPool
	// Intermediates are further certificates for chain building and for
	// finding signers beyond those embedded in the message.
	Intermediates []*x509.Certificate
	// Registered are signer certificates trusted directly (a client's
	// registered certificate, a partner certificate from the certstore). A
	// signer matching one of them is accepted without chain building, after
	// validity, key usage and revocation checks. They are also used to find
	// signers of messages without certificates.
	Registered []*x509.Certificate
	// CurrentTime is the time for validity checks; zero means now.
	CurrentTime time.Time
	// KeyUsages are the acceptable extended key usages for chain building;
	// empty means any.
	KeyUsages []x509.ExtKeyUsage
	// CRLs are trusted revocation lists, matched to certificates by issuer.
	// A CRL whose issuer is in the verified chain must be signed by it.
	CRLs []*x509.RevocationList
	// CheckRevocation, if set, is called for the signer certificate with its
	// chain (signer first; just the signer for registered certificates) and
	// refuses it by returning an error (wrap ErrCertificateRevoked).
	CheckRevocation func(cert *x509.Certificate, chain []*x509.Certificate) error
	// SkipTrust checks the signatures only and leaves trust to the caller
	// (e.g. certificate exchange, which stores the embedded certificate).
	SkipTrust bool
}

// Signed is the result of a successful Verify.
type Signed struct {
	// Content is the signed content (the detached content if given).
	Content []byte
	// ContentType is the eContentType.
	ContentType asn1.ObjectIdentifier
	// Signers holds one entry per SignerInfo, in message order; all verified.
	Signers []SignerInfo
	// Certificates are those embedded in the message.
	Certificates []*x509.Certificate
}

// SignerInfo describes one verified signer.
type SignerInfo struct {
	// Certificate is the signer's certificate.
	Certificate *x509.Certificate
	// Chain is the verified chain, signer first; nil when the signer was
	// accepted as a registered certificate or trust was skipped.
	Chain []*x509.Certificate
	// Hash is the digest algorithm.
	Hash crypto.Hash
	// SigningTime is the signingTime attribute; zero when absent.
	SigningTime time.Time
	// Signature is the signature value.
	Signature []byte
	// CounterSignatures are verified RFC 5652 §11.4 countersignatures over
	// Signature, each with its own trust decision.
	CounterSignatures []SignerInfo

	raw signerInfo
}

// Verify checks every SignerInfo of a DER or BER ContentInfo(SignedData):
// the message digest, the signature, and the signer's trust (chain to Roots
// or a Registered certificate, validity at CurrentTime, key usage,
// revocation). It returns the content and the signers only if all verify.
func Verify(der []byte, opts VerifyOptions) (*Signed, error) {
	sd, err := parseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	signed, err := sd.verify(opts)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return signed, nil
}

func (sd *signedData) verify(opts VerifyOptions) (*Signed, error) {
	if opts.Roots == nil && len(opts.Registered) == 0 && !opts.SkipTrust {
		return nil, ErrNoTrustAnchor
	}
	if len(sd.signerInfos) == 0 {
		return nil, ErrNoSigners
	}
	content := sd.content
	if !sd.hasContent {
		if opts.Content == nil {
			return nil, ErrNoContent
		}
		content = opts.Content
	}
	out, err := sd.verifyDigest(opts, bytesDigest(content))
	if err != nil {
		return nil, err
	}
	out.Content = content
	return out, nil
}

// verifyDigest is verify for content known by its digest.
func (sd *signedData) verifyDigest(opts VerifyOptions, dg contentDigest) (*Signed, error) {
	if opts.Roots == nil && len(opts.Registered) == 0 && !opts.SkipTrust {
		return nil, ErrNoTrustAnchor
	}
	if len(sd.signerInfos) == 0 {
		return nil, ErrNoSigners
	}
	embedded := make([]*x509.Certificate, 0, len(sd.certs))
	for _, raw := range sd.certs {
		// A certificate Go cannot parse is skipped: it can neither sign
		// nor anchor trust, and a signer that needed it is then not found.
		if c, err := x509.ParseCertificate(raw); err == nil {
			embedded = append(embedded, c)
		}
	}
	now := opts.CurrentTime
	if now.IsZero() {
		now = time.Now()
	}
	out := &Signed{ContentType: sd.contentType, Certificates: embedded}
	for i := range sd.signerInfos {
		si := &sd.signerInfos[i]
		res, err := verifySignerInfo(si, dg, sd.contentType, embedded, &opts, now, 0)
		if err != nil {
			return nil, fmt.Errorf("signer %d (%s): %w", i, si.sid, err)
		}
		out.Signers = append(out.Signers, *res)
	}
	return out, nil
}

func verifySignerInfo(si *signerInfo, dg contentDigest, contentType asn1.ObjectIdentifier, embedded []*x509.Certificate, opts *VerifyOptions, now time.Time, depth int) (*SignerInfo, error) {
	cert := findCert(si.sid, opts.Registered, embedded, opts.Intermediates)
	if cert == nil {
		return nil, ErrSignerNotFound
	}
	res, err := checkSignerInfo(si, dg, contentType, cert)
	if err != nil {
		return nil, err
	}
	if !opts.SkipTrust {
		if res.Chain, err = trust(cert, embedded, opts, now); err != nil {
			return nil, err
		}
	}
	if res.CounterSignatures, err = verifyCounterSignatures(si, embedded, opts, now, depth); err != nil {
		return nil, err
	}
	return res, nil
}

// checkSignerInfo checks the signed attributes and the signature of si over
// content with cert's public key, without any trust decision.
func checkSignerInfo(si *signerInfo, dg contentDigest, contentType asn1.ObjectIdentifier, cert *x509.Certificate) (*SignerInfo, error) {
	h, err := hashFromAlgorithm(si.digestAlg)
	if err != nil {
		return nil, err
	}
	if h == crypto.SHA1 {
		return nil, fmt.Errorf("%w: SHA-1", ErrUnsupportedAlgorithm)
	}
	res := &SignerInfo{Certificate: cert, Hash: h, Signature: si.signature, raw: *si}
	contentMD, err := dg(h)
	if err != nil {
		return nil, err
	}
	signedDigest := contentMD
	if si.signedAttrs != nil {
		attrs, err := parseAttributes(si.signedAttrs)
		if err != nil {
			return nil, err
		}
		ct, ok, err := findAttribute(attrs, oidBytes(oidAttrContentType))
		if err != nil {
			return nil, err
		}
		switch {
		case contentType == nil && ok:
			return nil, fmt.Errorf("%w: countersignature with contentType attribute", ErrMalformed)
		case contentType == nil:
		case !ok:
			return nil, fmt.Errorf("%w: contentType", ErrMissingAttribute)
		default:
			var ctOID asn1.ObjectIdentifier
			if rest, err := asn1.Unmarshal(ct, &ctOID); err != nil || len(rest) != 0 {
				return nil, fmt.Errorf("%w: contentType attribute", ErrMalformed)
			}
			if !ctOID.Equal(contentType) {
				return nil, fmt.Errorf("%w: contentType attribute %v differs from %v", ErrBadSignature, ctOID, contentType)
			}
		}
		md, ok, err := findAttribute(attrs, oidBytes(oidAttrMessageDigest))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: messageDigest", ErrMissingAttribute)
		}
		var mdValue []byte
		if rest, err := asn1.Unmarshal(md, &mdValue); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("%w: messageDigest attribute", ErrMalformed)
		}
		if !bytes.Equal(mdValue, contentMD) {
			return nil, ErrDigestMismatch
		}
		if st, ok, err := findAttribute(attrs, oidBytes(oidAttrSigningTime)); err != nil {
			return nil, err
		} else if ok {
			if res.SigningTime, err = parseTime(st); err != nil {
				return nil, err
			}
		}
		signedDigest = digest(h, si.signedAttrsDER())
	} else if contentType != nil && !contentType.Equal(oidData) {
		return nil, fmt.Errorf("%w: signed attributes for content type %v", ErrMissingAttribute, contentType)
	}
	if err := checkSignature(cert.PublicKey, si.sigAlg, h, signedDigest, si.signature); err != nil {
		return nil, err
	}
	return res, nil
}

// checkSignature verifies sig over the digest with pub according to the
// SignerInfo signatureAlgorithm.
func checkSignature(pub crypto.PublicKey, alg algorithmIdentifier, h crypto.Hash, dgst, sig []byte) error {
	switch {
	case alg.oid.Equal(oidRSAEncryption), alg.oid.Equal(oidSHA256WithRSA),
		alg.oid.Equal(oidSHA384WithRSA), alg.oid.Equal(oidSHA512WithRSA):
		if !alg.paramsAbsentOrNull() {
			return fmt.Errorf("%w: RSA signature parameters", ErrMalformed)
		}
		if want := rsaHashOf(alg.oid); want != 0 && want != h {
			return fmt.Errorf("%w: signature hash differs from digest algorithm", ErrUnsupportedAlgorithm)
		}
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RSA signature with %T", ErrUnsupportedKey, pub)
		}
		if err := rsa.VerifyPKCS1v15(rsaPub, h, dgst, sig); err != nil {
			return ErrBadSignature
		}
		return nil
	case alg.oid.Equal(oidRSASSAPSS):
		ph, salt, err := parsePSSParams(alg.params)
		if err != nil {
			return err
		}
		if ph != h {
			return fmt.Errorf("%w: PSS hash differs from digest algorithm", ErrUnsupportedAlgorithm)
		}
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: RSA-PSS signature with %T", ErrUnsupportedKey, pub)
		}
		if err := rsa.VerifyPSS(rsaPub, h, dgst, sig, &rsa.PSSOptions{SaltLength: salt, Hash: h}); err != nil {
			return ErrBadSignature
		}
		return nil
	case alg.oid.Equal(oidECDSAWithSHA256), alg.oid.Equal(oidECDSAWithSHA384),
		alg.oid.Equal(oidECDSAWithSHA512), alg.oid.Equal(oidECPublicKey):
		ecPub, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: ECDSA signature with %T", ErrUnsupportedKey, pub)
		}
		if !ecdsa.VerifyASN1(ecPub, dgst, sig) {
			return ErrBadSignature
		}
		return nil
	}
	return fmt.Errorf("%w: signature %v", ErrUnsupportedAlgorithm, alg.oid)
}

func rsaHashOf(oid asn1.ObjectIdentifier) crypto.Hash {
	switch {
	case oid.Equal(oidSHA256WithRSA):
		return crypto.SHA256
	case oid.Equal(oidSHA384WithRSA):
		return crypto.SHA384
	case oid.Equal(oidSHA512WithRSA):
		return crypto.SHA512
	}
	return 0
}

// findCert returns the first certificate matching id.
func findCert(id certID, pools ...[]*x509.Certificate) *x509.Certificate {
	for _, pool := range pools {
		for _, c := range pool {
			if id.matches(c) {
				return c
			}
		}
	}
	return nil
}

// trust decides whether cert may sign: it is a registered certificate, or it
// chains to opts.Roots. It returns the verified chain (nil for registered).
func trust(cert *x509.Certificate, embedded []*x509.Certificate, opts *VerifyOptions, now time.Time) ([]*x509.Certificate, error) {
	if err := checkSigningKeyUsage(cert); err != nil {
		return nil, err
	}
	for _, reg := range opts.Registered {
		if !reg.Equal(cert) {
			continue
		}
		if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
			return nil, fmt.Errorf("%w: %q valid %s to %s", ErrCertificateExpired, cert.Subject,
				cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
		}
		if err := checkRevocation(cert, []*x509.Certificate{cert}, opts); err != nil {
			return nil, err
		}
		return nil, nil
	}
	if opts.Roots == nil {
		return nil, fmt.Errorf("%w: %q is not a registered certificate", ErrUntrusted, cert.Subject)
	}
	inter := x509.NewCertPool()
	for _, c := range embedded {
		inter.AddCert(c)
	}
	for _, c := range opts.Intermediates {
		inter.AddCert(c)
	}
	usages := opts.KeyUsages
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots: opts.Roots, Intermediates: inter, CurrentTime: now, KeyUsages: usages,
	})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) {
			switch inv.Reason {
			case x509.Expired:
				return nil, fmt.Errorf("%w: %v", ErrCertificateExpired, err)
			case x509.IncompatibleUsage:
				return nil, fmt.Errorf("%w: %v", ErrKeyUsage, err)
			}
		}
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	var lastErr error
	for _, chain := range chains {
		if lastErr = checkRevocation(cert, chain, opts); lastErr == nil {
			return chain, nil
		}
	}
	return nil, lastErr
}

// checkSigningKeyUsage refuses a certificate whose key usage extension
// allows neither digitalSignature nor nonRepudiation.
func checkSigningKeyUsage(cert *x509.Certificate) error {
	if cert.KeyUsage == 0 {
		return nil
	}
	if cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fmt.Errorf("%w: %q may not sign", ErrKeyUsage, cert.Subject)
	}
	return nil
}

// checkRevocation checks every certificate of chain (signer first) but the
// last (the trust anchor, unless chain is just a registered certificate)
// against the CRLs, then calls the revocation callback.
func checkRevocation(cert *x509.Certificate, chain []*x509.Certificate, opts *VerifyOptions) error {
	n := len(chain) - 1
	if n == 0 {
		n = 1
	}
	for i, c := range chain[:n] {
		var issuer *x509.Certificate
		if i+1 < len(chain) {
			issuer = chain[i+1]
		}
		for _, crl := range opts.CRLs {
			if !bytes.Equal(crl.RawIssuer, c.RawIssuer) {
				continue
			}
			if issuer != nil {
				if err := crl.CheckSignatureFrom(issuer); err != nil {
					continue // another issuer with the same name
				}
			}
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					return fmt.Errorf("%w: %q serial %x revoked %s", ErrCertificateRevoked, c.Subject,
						c.SerialNumber, e.RevocationTime.Format(time.RFC3339))
				}
			}
		}
	}
	if opts.CheckRevocation != nil {
		if err := opts.CheckRevocation(cert, chain); err != nil {
			return fmt.Errorf("%w: %v", ErrCertificateRevoked, err)
		}
	}
	return nil
}
