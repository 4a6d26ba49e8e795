package cms

import (
	"encoding/asn1"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// signedData is a parsed SignedData (RFC 5652 §5.1).
type signedData struct {
	digestAlgs  []algorithmIdentifier
	contentType asn1.ObjectIdentifier
	content     []byte // eContent; nil when detached
	hasContent  bool
	certs       [][]byte // DER certificates (other CertificateChoices are dropped)
	crls        []byte   // content octets of [1] IMPLICIT RevocationInfoChoices, kept verbatim
	signerInfos []signerInfo
}

// signerInfo is a parsed SignerInfo (RFC 5652 §5.3).
type signerInfo struct {
	sid           certID
	digestAlg     algorithmIdentifier
	signedAttrs   []byte // content octets of [0] IMPLICIT SignedAttributes; nil when absent
	sigAlg        algorithmIdentifier
	signature     []byte
	unsignedAttrs []byte // content octets of [1] IMPLICIT UnsignedAttributes; nil when absent
}

func (si *signerInfo) version() int64 {
	if si.sid.ski != nil {
		return 3
	}
	return 1
}

func (si *signerInfo) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(si.version())
		si.sid.add(b)
		si.digestAlg.add(b)
		if si.signedAttrs != nil {
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddBytes(si.signedAttrs) })
		}
		si.sigAlg.add(b)
		b.AddASN1OctetString(si.signature)
		if si.unsignedAttrs != nil {
			b.AddASN1(tagC1, func(b *cryptobyte.Builder) { b.AddBytes(si.unsignedAttrs) })
		}
	})
	return b.BytesOrPanic()
}

// signedAttrsDER returns the DER of the signed attributes as a SET OF, which
// is what the signature covers (RFC 5652 §5.4).
func (si *signerInfo) signedAttrsDER() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(si.signedAttrs) })
	return b.BytesOrPanic()
}

func readSignerInfo(s *cryptobyte.String, si *signerInfo) bool {
	var seq cryptobyte.String
	var version int64
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!readCertID(&seq, &si.sid) || !readAlgorithmIdentifier(&seq, &si.digestAlg) {
		return false
	}
	if seq.PeekASN1Tag(tagC0) {
		var attrs cryptobyte.String
		if !seq.ReadASN1(&attrs, tagC0) {
			return false
		}
		si.signedAttrs = slices.Clone([]byte(attrs))
		if si.signedAttrs == nil {
			si.signedAttrs = []byte{}
		}
	}
	var sig cryptobyte.String
	if !readAlgorithmIdentifier(&seq, &si.sigAlg) || !seq.ReadASN1(&sig, cbasn1.OCTET_STRING) {
		return false
	}
	si.signature = slices.Clone([]byte(sig))
	if seq.PeekASN1Tag(tagC1) {
		var attrs cryptobyte.String
		if !seq.ReadASN1(&attrs, tagC1) {
			return false
		}
		si.unsignedAttrs = slices.Clone([]byte(attrs))
	}
	return seq.Empty()
}

func (sd *signedData) version() int64 {
	if !sd.contentType.Equal(oidData) {
		return 3
	}
	for i := range sd.signerInfos {
		if sd.signerInfos[i].version() == 3 {
			return 3
		}
	}
	return 1
}

// encode returns the DER ContentInfo. The SignerInfos keep their order (it
// records who signed first); certificates keep theirs, the signer first.
func (sd *signedData) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(sd.version())
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			enc := make([][]byte, len(sd.digestAlgs))
			for i, a := range sd.digestAlgs {
				enc[i] = marshalAlgorithm(a)
			}
			for _, e := range sortedDER(enc) {
				b.AddBytes(e)
			}
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(sd.contentType)
			if sd.hasContent {
				b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddASN1OctetString(sd.content) })
			}
		})
		if len(sd.certs) > 0 {
			b.AddASN1(tagC0, func(b *cryptobyte.Builder) {
				for _, c := range sd.certs {
					b.AddBytes(c)
				}
			})
		}
		if sd.crls != nil {
			b.AddASN1(tagC1, func(b *cryptobyte.Builder) { b.AddBytes(sd.crls) })
		}
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for i := range sd.signerInfos {
				b.AddBytes(sd.signerInfos[i].encode())
			}
		})
	})
	return contentInfo(oidSignedData, b.BytesOrPanic())
}

// addDigestAlgorithm records a digest algorithm once.
func (sd *signedData) addDigestAlgorithm(a algorithmIdentifier) {
	for _, d := range sd.digestAlgs {
		if d.oid.Equal(a.oid) {
			return
		}
	}
	sd.digestAlgs = append(sd.digestAlgs, a)
}

// addCertificate records a DER certificate once.
func (sd *signedData) addCertificate(der []byte) {
	for _, c := range sd.certs {
		if string(c) == string(der) {
			return
		}
	}
	sd.certs = append(sd.certs, der)
}

func parseSignedData(der []byte) (*signedData, error) {
	inner, err := expectContentInfo(der, oidSignedData)
	if err != nil {
		return nil, err
	}
	sd := new(signedData)
	s := cryptobyte.String(inner)
	var seq, algs, encap cryptobyte.String
	var version int64
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1Int64WithTag(&version, cbasn1.INTEGER) ||
		!seq.ReadASN1(&algs, cbasn1.SET) {
		return nil, fmt.Errorf("%w: SignedData header", ErrMalformed)
	}
	for !algs.Empty() {
		var a algorithmIdentifier
		if !readAlgorithmIdentifier(&algs, &a) {
			return nil, fmt.Errorf("%w: SignedData digestAlgorithms", ErrMalformed)
		}
		sd.digestAlgs = append(sd.digestAlgs, a)
	}
	if !seq.ReadASN1(&encap, cbasn1.SEQUENCE) || !encap.ReadASN1ObjectIdentifier(&sd.contentType) {
		return nil, fmt.Errorf("%w: EncapsulatedContentInfo", ErrMalformed)
	}
	if !encap.Empty() {
		var explicit, octets cryptobyte.String
		if !encap.ReadASN1(&explicit, tagC0) || !explicit.ReadASN1(&octets, cbasn1.OCTET_STRING) ||
			!explicit.Empty() || !encap.Empty() {
			return nil, fmt.Errorf("%w: eContent", ErrMalformed)
		}
		sd.content = []byte(octets)
		sd.hasContent = true
	}
	if seq.PeekASN1Tag(tagC0) {
		var certs cryptobyte.String
		if !seq.ReadASN1(&certs, tagC0) {
			return nil, fmt.Errorf("%w: certificates", ErrMalformed)
		}
		for !certs.Empty() {
			var c cryptobyte.String
			var tag cbasn1.Tag
			if !certs.ReadAnyASN1Element(&c, &tag) {
				return nil, fmt.Errorf("%w: certificates", ErrMalformed)
			}
			if tag == cbasn1.SEQUENCE { // plain Certificate; skip attribute and other certificates
				sd.certs = append(sd.certs, slices.Clone([]byte(c)))
			}
		}
	}
	if seq.PeekASN1Tag(tagC1) {
		var crls cryptobyte.String
		if !seq.ReadASN1(&crls, tagC1) {
			return nil, fmt.Errorf("%w: crls", ErrMalformed)
		}
		sd.crls = slices.Clone([]byte(crls))
	}
	var sis cryptobyte.String
	if !seq.ReadASN1(&sis, cbasn1.SET) || !seq.Empty() {
		return nil, fmt.Errorf("%w: signerInfos", ErrMalformed)
	}
	for !sis.Empty() {
		var si signerInfo
		if !readSignerInfo(&sis, &si) {
			return nil, fmt.Errorf("%w: SignerInfo %d", ErrMalformed, len(sd.signerInfos))
		}
		sd.signerInfos = append(sd.signerInfos, si)
	}
	return sd, nil
}
