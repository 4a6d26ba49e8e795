package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// maxCounterDepth bounds nested countersignatures.
const maxCounterDepth = 4

// CounterSign adds an RFC 5652 §11.4 countersignature to the SignerInfo at
// index signer: a SignerInfo over that signer's signature value, stored as
// its unsigned countersignature attribute. Unlike AddSigner it proves the
// countersigner saw that particular signature (the buyer countersigns the
// merchant's offer). The countersigner's certificates are embedded unless
// opts.OmitCertificates is set; opts.Detached and opts.ReceiptRequest are
// ignored. openssl keeps but does not check countersignatures; Verify does.
func CounterSign(der []byte, signer int, key crypto.Signer, chain []*x509.Certificate, opts SignOptions) ([]byte, error) {
	sd, err := parseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	if signer < 0 || signer >= len(sd.signerInfos) {
		return nil, fmt.Errorf("countersign: %w: no signer %d", ErrNoSigners, signer)
	}
	target := &sd.signerInfos[signer]
	opts.ReceiptRequest = nil
	opts.extraAttrs = nil
	csi, err := newSignerInfo(target.signature, nil, key, chain, &opts)
	if err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	if target.unsignedAttrs, err = addAttributeValue(target.unsignedAttrs, oidBytes(oidAttrCounterSignature), csi.encode()); err != nil {
		return nil, fmt.Errorf("countersign: %w", err)
	}
	if !opts.OmitCertificates {
		for _, c := range chain {
			sd.addCertificate(c.Raw)
		}
	}
	return sd.encode(), nil
}

// addAttributeValue adds value to the attribute of type typ in the content
// octets of a SET OF Attribute, creating the attribute if needed.
func addAttributeValue(set []byte, typ, value []byte) ([]byte, error) {
	attrs, err := parseAttributes(set)
	if err != nil {
		return nil, err
	}
	found := false
	for i := range attrs {
		if bytes.Equal(attrs[i].typ, typ) {
			attrs[i].values = append(attrs[i].values, value)
			found = true
		}
	}
	if !found {
		attrs = append(attrs, attribute{typ: typ, values: [][]byte{value}})
	}
	return encodeAttributes(attrs), nil
}

// verifyCounterSignatures verifies every countersignature of si (and theirs,
// to maxCounterDepth) with the same trust options as the main signature.
func verifyCounterSignatures(si *signerInfo, embedded []*x509.Certificate, opts *VerifyOptions, now time.Time, depth int) ([]SignerInfo, error) {
	if si.unsignedAttrs == nil {
		return nil, nil
	}
	attrs, err := parseAttributes(si.unsignedAttrs)
	if err != nil {
		return nil, err
	}
	var out []SignerInfo
	for _, a := range attrs {
		if !bytes.Equal(a.typ, oidBytes(oidAttrCounterSignature)) {
			continue
		}
		if depth >= maxCounterDepth {
			return nil, fmt.Errorf("%w: countersignatures nested deeper than %d", ErrMalformed, maxCounterDepth)
		}
		for i, v := range a.values {
			var csi signerInfo
			s := cryptobyte.String(v)
			if !readSignerInfo(&s, &csi) || !s.Empty() {
				return nil, fmt.Errorf("%w: countersignature %d", ErrMalformed, i)
			}
			res, err := verifySignerInfo(&csi, bytesDigest(si.signature), nil, embedded, opts, now, depth+1)
			if err != nil {
				return nil, fmt.Errorf("countersignature %d (%s): %w", i, csi.sid, err)
			}
			out = append(out, *res)
		}
	}
	return out, nil
}
