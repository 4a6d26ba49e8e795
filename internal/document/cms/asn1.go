package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Context-specific tags: tagCn is [n] constructed (EXPLICIT, or IMPLICIT over a
// constructed type), tagP0 is [0] primitive.
var (
	tagC0 = cbasn1.Tag(0).Constructed().ContextSpecific()
	tagC1 = cbasn1.Tag(1).Constructed().ContextSpecific()
	tagC2 = cbasn1.Tag(2).Constructed().ContextSpecific()
	tagC3 = cbasn1.Tag(3).Constructed().ContextSpecific()
	tagP0 = cbasn1.Tag(0).ContextSpecific()
)

// algorithmIdentifier is an AlgorithmIdentifier with its parameters kept as
// the full DER of the parameters element (nil when absent).
type algorithmIdentifier struct {
	oid    asn1.ObjectIdentifier
	params []byte
}

func (a algorithmIdentifier) add(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.oid)
		if a.params != nil {
			b.AddBytes(a.params)
		}
	})
}

func readAlgorithmIdentifier(s *cryptobyte.String, a *algorithmIdentifier) bool {
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1ObjectIdentifier(&a.oid) {
		return false
	}
	a.params = nil
	if !seq.Empty() {
		var p cryptobyte.String
		if !seq.ReadAnyASN1Element(&p, nil) || !seq.Empty() {
			return false
		}
		a.params = slices.Clone([]byte(p))
	}
	return true
}

// paramsAbsentOrNull reports whether the algorithm has no parameters or NULL.
func (a algorithmIdentifier) paramsAbsentOrNull() bool {
	return a.params == nil || bytes.Equal(a.params, []byte{0x05, 0x00})
}

var asn1Null = []byte{0x05, 0x00}

// issuerAndSerial identifies a certificate (RFC 5652 §10.2.4).
type issuerAndSerial struct {
	rawIssuer []byte // DER Name
	serial    *big.Int
}

func (is issuerAndSerial) add(b *cryptobyte.Builder) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(is.rawIssuer)
		b.AddASN1BigInt(is.serial)
	})
}

func readIssuerAndSerial(s *cryptobyte.String, is *issuerAndSerial) bool {
	var seq, name cryptobyte.String
	is.serial = new(big.Int)
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) ||
		!seq.ReadASN1Element(&name, cbasn1.SEQUENCE) ||
		!seq.ReadASN1Integer(is.serial) || !seq.Empty() {
		return false
	}
	is.rawIssuer = slices.Clone([]byte(name))
	return true
}

// certID is a SignerIdentifier or RecipientIdentifier: either an issuer and
// serial number or a subject key identifier.
type certID struct {
	issuerSerial *issuerAndSerial
	ski          []byte
}

func certIDFor(cert *x509.Certificate, useSKI bool) (certID, error) {
	if useSKI {
		if len(cert.SubjectKeyId) == 0 {
			return certID{}, fmt.Errorf("certificate %q has no subject key identifier", cert.Subject)
		}
		return certID{ski: cert.SubjectKeyId}, nil
	}
	return certID{issuerSerial: &issuerAndSerial{rawIssuer: cert.RawIssuer, serial: cert.SerialNumber}}, nil
}

func (id certID) matches(cert *x509.Certificate) bool {
	if id.issuerSerial != nil {
		return bytes.Equal(id.issuerSerial.rawIssuer, cert.RawIssuer) &&
			id.issuerSerial.serial.Cmp(cert.SerialNumber) == 0
	}
	return len(id.ski) > 0 && bytes.Equal(id.ski, cert.SubjectKeyId)
}

// add writes the identifier; skiTag is the tag used for the key identifier
// alternative ([0] IMPLICIT in SignerIdentifier and RecipientIdentifier).
func (id certID) add(b *cryptobyte.Builder) {
	if id.issuerSerial != nil {
		id.issuerSerial.add(b)
		return
	}
	b.AddASN1(tagP0, func(b *cryptobyte.Builder) { b.AddBytes(id.ski) })
}

func readCertID(s *cryptobyte.String, id *certID) bool {
	if s.PeekASN1Tag(cbasn1.SEQUENCE) {
		id.issuerSerial = new(issuerAndSerial)
		return readIssuerAndSerial(s, id.issuerSerial)
	}
	var ski cryptobyte.String
	if !s.ReadASN1(&ski, tagP0) {
		return false
	}
	id.ski = slices.Clone([]byte(ski))
	return true
}

func (id certID) String() string {
	if id.issuerSerial != nil {
		var rdn pkix.RDNSequence
		if _, err := asn1.Unmarshal(id.issuerSerial.rawIssuer, &rdn); err == nil {
			return fmt.Sprintf("issuer %q serial %x", rdn.String(), id.issuerSerial.serial)
		}
		return fmt.Sprintf("serial %x", id.issuerSerial.serial)
	}
	return fmt.Sprintf("key id %x", id.ski)
}

// attribute is an Attribute (RFC 5652 §5.3) with its type kept as the DER
// content octets of the OBJECT IDENTIFIER, so that arcs larger than an int
// (the 2.25 UUID arc used by this package) compare correctly.
type attribute struct {
	typ    []byte   // OID content octets
	values [][]byte // DER of each AttributeValue
}

func oidBytes(oid asn1.ObjectIdentifier) []byte {
	der, err := asn1.Marshal(oid)
	if err != nil {
		panic(err)
	}
	return der[2:]
}

func (a attribute) encode() []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(a.typ) })
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range sortedDER(a.values) {
				b.AddBytes(v)
			}
		})
	})
	return b.BytesOrPanic()
}

// encodeAttributes returns the content octets of a DER SET OF Attribute
// (elements sorted as DER requires).
func encodeAttributes(attrs []attribute) []byte {
	enc := make([][]byte, len(attrs))
	for i, a := range attrs {
		enc[i] = a.encode()
	}
	return bytes.Join(sortedDER(enc), nil)
}

func sortedDER(elems [][]byte) [][]byte {
	out := slices.Clone(elems)
	slices.SortFunc(out, bytes.Compare)
	return out
}

func parseAttributes(content []byte) ([]attribute, error) {
	s := cryptobyte.String(content)
	var attrs []attribute
	for !s.Empty() {
		var seq, oid, set cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) ||
			!seq.ReadASN1(&oid, cbasn1.OBJECT_IDENTIFIER) ||
			!seq.ReadASN1(&set, cbasn1.SET) || !seq.Empty() {
			return nil, fmt.Errorf("%w: attribute", ErrMalformed)
		}
		a := attribute{typ: slices.Clone([]byte(oid))}
		for !set.Empty() {
			var v cryptobyte.String
			if !set.ReadAnyASN1Element(&v, nil) {
				return nil, fmt.Errorf("%w: attribute value", ErrMalformed)
			}
			a.values = append(a.values, slices.Clone([]byte(v)))
		}
		attrs = append(attrs, a)
	}
	return attrs, nil
}

// findAttribute returns the single value of the attribute of the given type;
// ok is false when it is absent. More than one attribute or value of the same
// type is an error (RFC 5652 §11).
func findAttribute(attrs []attribute, typ []byte) (value []byte, ok bool, err error) {
	for _, a := range attrs {
		if !bytes.Equal(a.typ, typ) {
			continue
		}
		if ok || len(a.values) != 1 {
			return nil, false, fmt.Errorf("%w: attribute %x must occur once with one value", ErrMalformed, typ)
		}
		value, ok = a.values[0], true
	}
	return value, ok, nil
}

// Digest algorithms.

func hashOID(h crypto.Hash) (asn1.ObjectIdentifier, error) {
	switch h {
	case crypto.SHA256:
		return oidSHA256, nil
	case crypto.SHA384:
		return oidSHA384, nil
	case crypto.SHA512:
		return oidSHA512, nil
	}
	return nil, fmt.Errorf("%w: hash %v", ErrUnsupportedAlgorithm, h)
}

func hashFromOID(oid asn1.ObjectIdentifier) (crypto.Hash, error) {
	switch {
	case oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	case oid.Equal(oidSHA1):
		return crypto.SHA1, nil
	}
	return 0, fmt.Errorf("%w: digest %v", ErrUnsupportedAlgorithm, oid)
}

func digestAlgorithm(h crypto.Hash) (algorithmIdentifier, error) {
	oid, err := hashOID(h)
	if err != nil {
		return algorithmIdentifier{}, err
	}
	return algorithmIdentifier{oid: oid}, nil
}

func hashFromAlgorithm(a algorithmIdentifier) (crypto.Hash, error) {
	if !a.paramsAbsentOrNull() {
		return 0, fmt.Errorf("%w: digest parameters", ErrUnsupportedAlgorithm)
	}
	return hashFromOID(a.oid)
}

func digest(h crypto.Hash, data []byte) []byte {
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

func marshalAlgorithm(a algorithmIdentifier) []byte {
	var b cryptobyte.Builder
	a.add(&b)
	return b.BytesOrPanic()
}

// contentInfo wraps content (the DER of the inner structure) in a
// ContentInfo of the given type.
func contentInfo(typ asn1.ObjectIdentifier, content []byte) []byte {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(typ)
		b.AddASN1(tagC0, func(b *cryptobyte.Builder) { b.AddBytes(content) })
	})
	return b.BytesOrPanic()
}

// parseContentInfo converts BER to DER and returns the content type and the
// DER of the inner content.
func parseContentInfo(der []byte) (asn1.ObjectIdentifier, []byte, error) {
	norm, err := toDER(der)
	if err != nil {
		return nil, nil, err
	}
	s := cryptobyte.String(norm)
	var seq, inner cryptobyte.String
	var typ asn1.ObjectIdentifier
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() ||
		!seq.ReadASN1ObjectIdentifier(&typ) ||
		!seq.ReadASN1(&inner, tagC0) || !seq.Empty() {
		return nil, nil, fmt.Errorf("%w: ContentInfo", ErrMalformed)
	}
	return typ, []byte(inner), nil
}

// expectContentInfo parses a ContentInfo and checks its type.
func expectContentInfo(der []byte, want asn1.ObjectIdentifier) ([]byte, error) {
	typ, inner, err := parseContentInfo(der)
	if err != nil {
		return nil, err
	}
	if !typ.Equal(want) {
		return nil, fmt.Errorf("%w: got %v, want %v", ErrUnexpectedContentType, typ, want)
	}
	return inner, nil
}
