package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// SignOptions controls Sign and AddSigner. The zero value signs attached
// content with SHA-256, PKCS#1 v1.5 for RSA keys, the signer identified by
// issuer and serial number, the chain embedded, and signed attributes
// contentType, messageDigest and signingTime.
type SignOptions struct {
	// Hash is the digest algorithm: crypto.SHA256 (default), SHA384 or SHA512.
	Hash crypto.Hash
	// Detached leaves the content out of the SignedData.
	Detached bool
	// PSS signs with RSASSA-PSS (salt length = hash length, MGF1 with the same
	// hash) instead of PKCS#1 v1.5. It is ignored for ECDSA keys.
	PSS bool
	// OmitCertificates leaves the signer's chain out of the message; the
	// verifier then needs the signer certificate (VerifyOptions.Registered).
	OmitCertificates bool
	// SubjectKeyID identifies the signer by subject key identifier instead of
	// issuer and serial number.
	SubjectKeyID bool
	// NoSignedAttributes signs the content directly, without contentType,
	// messageDigest and signingTime (only for id-data content).
	NoSignedAttributes bool
	// SigningTime is written as the signingTime attribute; zero means now.
	SigningTime time.Time
	// ReceiptRequest asks the recipient for an RFC 2634 signed receipt.
	ReceiptRequest *ReceiptRequest
	// Rand is the source of randomness; nil means crypto/rand.Reader.
	Rand io.Reader

	// contentType is the eContentType; nil means id-data.
	contentType asn1.ObjectIdentifier
	// extraAttrs are further signed attributes (receipts, acknowledgements).
	extraAttrs []attribute
}

func (o *SignOptions) hash() crypto.Hash {
	if o.Hash == 0 {
		return crypto.SHA256
	}
	return o.Hash
}

func (o *SignOptions) rand() io.Reader {
	if o.Rand == nil {
		return rand.Reader
	}
	return o.Rand
}

// Sign returns a DER ContentInfo holding SignedData over content, signed by
// key. chain[0] is the signer's certificate and must hold key's public key;
// the rest of the chain (intermediates) is embedded too unless
// OmitCertificates is set. key may be any crypto.Signer (an HSM key works)
// whose public key is RSA or ECDSA P-256/P-384/P-521.
func Sign(content []byte, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) ([]byte, error) {
	ct := opts.contentType
	if ct == nil {
		ct = oidData
	}
	sd := &signedData{contentType: ct}
	if !opts.Detached {
		sd.content = content
		sd.hasContent = true
	}
	if err := sd.addSigner(content, key, chain, &opts); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sd.encode(), nil
}

// AddSigner adds another SignerInfo over the same content to an existing
// SignedData (re-signing: merchant, buyer, merchant again). The existing
// signatures are kept unchanged and are not checked here; content is needed
// only for detached signatures. opts.Detached is ignored: the message stays
// attached or detached as it was.
func AddSigner(der, content []byte, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) ([]byte, error) {
	sd, err := parseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("add signer: %w", err)
	}
	if sd.hasContent {
		content = sd.content
	} else if content == nil {
		return nil, fmt.Errorf("add signer: %w", ErrNoContent)
	}
	opts.contentType = sd.contentType
	if err := sd.addSigner(content, key, chain, &opts); err != nil {
		return nil, fmt.Errorf("add signer: %w", err)
	}
	return sd.encode(), nil
}

// addSigner signs content and appends the SignerInfo, its digest algorithm
// and (unless omitted) its certificates.
func (sd *signedData) addSigner(content []byte, key crypto.Signer, chain []*x509.Certificate, opts *SignOptions) error {
	si, err := newSignerInfo(content, sd.contentType, key, chain, opts)
	if err != nil {
		return err
	}
	sd.addDigestAlgorithm(si.digestAlg)
	if !opts.OmitCertificates {
		for _, c := range chain {
			sd.addCertificate(c.Raw)
		}
	}
	sd.signerInfos = append(sd.signerInfos, *si)
	return nil
}

// newSignerInfo builds and signs one SignerInfo.
func newSignerInfo(content []byte, contentType asn1.ObjectIdentifier, key crypto.Signer, chain []*x509.Certificate, opts *SignOptions) (*signerInfo, error) {
	return newSignerInfoDigest(bytesDigest(content), contentType, key, chain, opts)
}

// contentDigest returns the digest of the content with a hash (computed
// before, when the content was streamed).
type contentDigest func(h crypto.Hash) ([]byte, error)

func bytesDigest(content []byte) contentDigest {
	return func(h crypto.Hash) ([]byte, error) {
		if !h.Available() {
			return nil, fmt.Errorf("%w: hash %v", ErrUnsupportedAlgorithm, h)
		}
		return digest(h, content), nil
	}
}

// newSignerInfoDigest builds and signs one SignerInfo over content known by
// its digest.
func newSignerInfoDigest(dg contentDigest, contentType asn1.ObjectIdentifier, key crypto.Signer, chain []*x509.Certificate, opts *SignOptions) (*signerInfo, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, fmt.Errorf("%w: no signer certificate", ErrSignerNotFound)
	}
	cert := chain[0]
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: key does not match certificate %q", ErrUnsupportedKey, cert.Subject)
	}
	h := opts.hash()
	digestAlg, err := digestAlgorithm(h)
	if err != nil {
		return nil, err
	}
	sigAlg, signerOpts, err := signatureAlgorithm(key.Public(), h, opts.PSS)
	if err != nil {
		return nil, err
	}
	sid, err := certIDFor(cert, opts.SubjectKeyID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignerNotFound, err)
	}
	si := &signerInfo{sid: sid, digestAlg: digestAlg, sigAlg: sigAlg}

	md, err := dg(h)
	if err != nil {
		return nil, err
	}
	toSign := md
	if opts.NoSignedAttributes {
		if (contentType != nil && !contentType.Equal(oidData)) || len(opts.extraAttrs) > 0 || opts.ReceiptRequest != nil {
			return nil, fmt.Errorf("%w: signed attributes are required for this content", ErrUnsupportedAlgorithm)
		}
	} else {
		attrs, err := standardAttributes(md, contentType, opts)
		if err != nil {
			return nil, err
		}
		si.signedAttrs = encodeAttributes(attrs)
		toSign = digest(h, si.signedAttrsDER())
	}
	sig, err := key.Sign(opts.rand(), toSign, signerOpts)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	si.signature = sig
	return si, nil
}

func standardAttributes(md []byte, contentType asn1.ObjectIdentifier, opts *SignOptions) ([]attribute, error) {
	t := opts.SigningTime
	if t.IsZero() {
		t = time.Now()
	}
	timeDER, err := encodeTime(t)
	if err != nil {
		return nil, err
	}
	attrs := []attribute{
		{typ: oidBytes(oidAttrSigningTime), values: [][]byte{timeDER}},
		{typ: oidBytes(oidAttrMessageDigest), values: [][]byte{mustMarshal(md)}},
	}
	if contentType != nil { // a countersignature has no contentType (RFC 5652 §11.4)
		attrs = append(attrs, attribute{typ: oidBytes(oidAttrContentType), values: [][]byte{mustMarshal(contentType)}})
	}
	if opts.ReceiptRequest != nil {
		rr, err := opts.ReceiptRequest.encode()
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, attribute{typ: oidBytes(oidAttrReceiptRequest), values: [][]byte{rr}})
	}
	return append(attrs, opts.extraAttrs...), nil
}

// encodeTime writes UTCTime for 1950-2049 and GeneralizedTime otherwise, as
// RFC 5652 §11.3 requires.
func encodeTime(t time.Time) ([]byte, error) {
	var b cryptobyte.Builder
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b.AddASN1UTCTime(t)
	} else {
		b.AddASN1GeneralizedTime(t)
	}
	return b.Bytes()
}

func parseTime(der []byte) (time.Time, error) {
	s := cryptobyte.String(der)
	var t time.Time
	switch {
	case s.PeekASN1Tag(cbasn1.UTCTime):
		if !s.ReadASN1UTCTime(&t) {
			return t, fmt.Errorf("%w: signingTime", ErrMalformed)
		}
	case s.PeekASN1Tag(cbasn1.GeneralizedTime):
		if !s.ReadASN1GeneralizedTime(&t) {
			return t, fmt.Errorf("%w: signingTime", ErrMalformed)
		}
	default:
		return t, fmt.Errorf("%w: signingTime", ErrMalformed)
	}
	return t, nil
}

func mustMarshal(v any) []byte {
	der, err := asn1.Marshal(v)
	if err != nil {
		panic(err)
	}
	return der
}

// signatureAlgorithm returns the SignerInfo signatureAlgorithm and the
// crypto.SignerOpts for a public key.
func signatureAlgorithm(pub crypto.PublicKey, h crypto.Hash, pss bool) (algorithmIdentifier, crypto.SignerOpts, error) {
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if pss {
			params, err := pssParams(h)
			if err != nil {
				return algorithmIdentifier{}, nil, err
			}
			return algorithmIdentifier{oid: oidRSASSAPSS, params: params},
				&rsa.PSSOptions{SaltLength: h.Size(), Hash: h}, nil
		}
		// rsaEncryption, as openssl writes and RFC 3370 §3.2 allows.
		return algorithmIdentifier{oid: oidRSAEncryption, params: asn1Null}, h, nil
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return algorithmIdentifier{}, nil, fmt.Errorf("%w: curve %s", ErrUnsupportedKey, pub.Curve.Params().Name)
		}
		var oid asn1.ObjectIdentifier
		switch h {
		case crypto.SHA256:
			oid = oidECDSAWithSHA256
		case crypto.SHA384:
			oid = oidECDSAWithSHA384
		case crypto.SHA512:
			oid = oidECDSAWithSHA512
		default:
			return algorithmIdentifier{}, nil, fmt.Errorf("%w: hash %v", ErrUnsupportedAlgorithm, h)
		}
		return algorithmIdentifier{oid: oid}, h, nil
	}
	return algorithmIdentifier{}, nil, fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}

// pssParams encodes RSASSA-PSS-params (RFC 4055 §3.1) with the hash, MGF1
// over the same hash and salt length = hash length; trailerField is default.
func pssParams(h crypto.Hash) ([]byte, error) {
	hashAlg, err := digestAlgorithm(h)
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { hashAlg.add(b) })
		b.AddASN1(tagC1, func(b *cryptobyte.Builder) {
			algorithmIdentifier{oid: oidMGF1, params: marshalAlgorithm(hashAlg)}.add(b)
		})
		b.AddASN1(tagC2, func(b *cryptobyte.Builder) { b.AddASN1Int64(int64(h.Size())) })
	})
	return b.Bytes()
}

// readHashParams reads the [0] hash and [1] mask generation fields that
// RSASSA-PSS and RSAES-OAEP parameters share (what names which, for
// errors). An absent field keeps its SHA-1 default; hasMGF says whether
// the mask generation field was there.
func readHashParams(seq *cryptobyte.String, what string) (h, mgf crypto.Hash, hasMGF bool, err error) {
	h, mgf = crypto.SHA1, crypto.SHA1
	if seq.PeekASN1Tag(tagC0) {
		var e cryptobyte.String
		var a algorithmIdentifier
		if !seq.ReadASN1(&e, tagC0) || !readAlgorithmIdentifier(&e, &a) {
			return 0, 0, false, fmt.Errorf("%w: %s hash", ErrMalformed, what)
		}
		if h, err = hashFromAlgorithm(a); err != nil {
			return 0, 0, false, err
		}
	}
	if seq.PeekASN1Tag(tagC1) {
		var e cryptobyte.String
		var a algorithmIdentifier
		if !seq.ReadASN1(&e, tagC1) || !readAlgorithmIdentifier(&e, &a) {
			return 0, 0, false, fmt.Errorf("%w: %s mask generation", ErrMalformed, what)
		}
		if mgf, err = mgf1Hash(a); err != nil {
			return 0, 0, false, err
		}
		hasMGF = true
	}
	return h, mgf, hasMGF, nil
}

// parsePSSParams returns the hash and salt length of RSASSA-PSS-params. MGF1
// must use the same hash and the trailer field must be 1.
func parsePSSParams(params []byte) (crypto.Hash, int, error) {
	s := cryptobyte.String(params)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return 0, 0, fmt.Errorf("%w: RSASSA-PSS parameters", ErrMalformed)
	}
	salt, trailer := int64(20), int64(1)
	h, mgfHash, _, err := readHashParams(&seq, "PSS")
	if err != nil {
		return 0, 0, err
	}
	if seq.PeekASN1Tag(tagC2) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagC2) || !e.ReadASN1Integer(&salt) || salt < 0 {
			return 0, 0, fmt.Errorf("%w: PSS salt length", ErrMalformed)
		}
	}
	if seq.PeekASN1Tag(tagC3) {
		var e cryptobyte.String
		if !seq.ReadASN1(&e, tagC3) || !e.ReadASN1Integer(&trailer) {
			return 0, 0, fmt.Errorf("%w: PSS trailer", ErrMalformed)
		}
	}
	if !seq.Empty() || trailer != 1 {
		return 0, 0, fmt.Errorf("%w: RSASSA-PSS parameters", ErrMalformed)
	}
	if mgfHash != h {
		return 0, 0, fmt.Errorf("%w: PSS with MGF1 hash %v differing from hash %v", ErrUnsupportedAlgorithm, mgfHash, h)
	}
	return h, int(salt), nil
}

// mgf1Hash returns the hash of an id-mgf1 AlgorithmIdentifier.
func mgf1Hash(a algorithmIdentifier) (crypto.Hash, error) {
	if !a.oid.Equal(oidMGF1) {
		return 0, fmt.Errorf("%w: mask generation %v", ErrUnsupportedAlgorithm, a.oid)
	}
	s := cryptobyte.String(a.params)
	var h algorithmIdentifier
	if !readAlgorithmIdentifier(&s, &h) || !s.Empty() {
		return 0, fmt.Errorf("%w: MGF1 parameters", ErrMalformed)
	}
	return hashFromAlgorithm(h)
}
