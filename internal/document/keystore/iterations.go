package keystore

import (
	"bytes"
	"encoding/asn1"
	"fmt"
)

// MaxPKCS12Iterations bounds the key-derivation iteration counts accepted
// in a PKCS#12 file. The counts come from the file itself, so without a
// bound a crafted file with, say, 2^31 iterations would keep a CPU busy for
// hours before its password could even be checked.
const MaxPKCS12Iterations = 2_000_000

var (
	// DER of the OIDs whose parameters carry iteration counts: PBKDF2
	// (1.2.840.113549.1.5.12, inside PBES2) and the PKCS#12 PBE schemes
	// (1.2.840.113549.1.12.1.1-6), which all share the prefix below.
	derOIDPBKDF2       = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c}
	derOIDPKCS12PBEArc = []byte{0x06, 0x0a, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01}
)

type pfxOuter struct {
	Version  int
	AuthSafe asn1.RawValue
	MacData  pfxMacData `asn1:"optional"`
}

type pfxMacData struct {
	Mac        asn1.RawValue
	MacSalt    []byte
	Iterations int `asn1:"optional,default:1"`
}

// saltIterations is the common head of PBKDF2-params and pkcs-12PbeParams.
type saltIterations struct {
	Salt       asn1.RawValue
	Iterations int
	Rest       asn1.RawValue `asn1:"optional"`
	Rest2      asn1.RawValue `asn1:"optional"`
}

// checkIterations refuses a PKCS#12 file whose MAC or encryption iteration
// counts exceed MaxPKCS12Iterations. All such parameters sit outside the
// encrypted parts (AlgorithmIdentifiers are in the clear), so a scan for
// the algorithm OIDs finds every one of them.
func checkIterations(data []byte) error {
	var outer pfxOuter
	if _, err := asn1.Unmarshal(data, &outer); err != nil {
		return fmt.Errorf("pkcs12: %w: %w", ErrMalformed, err)
	}
	if outer.MacData.Mac.FullBytes != nil {
		if err := checkCount("MAC", outer.MacData.Iterations); err != nil {
			return err
		}
	}
	for _, oid := range [][]byte{derOIDPBKDF2, derOIDPKCS12PBEArc} {
		for rest := data; ; {
			i := bytes.Index(rest, oid)
			if i < 0 {
				break
			}
			rest = rest[i+len(oid):]
			if oid[1] == 0x0a { // PKCS#12 PBE: skip the last arc
				if len(rest) == 0 {
					break
				}
				rest = rest[1:]
			}
			var p saltIterations
			if _, err := asn1.Unmarshal(rest, &p); err != nil {
				continue // not parameters after all; the decoder will judge
			}
			if err := checkCount("encryption", p.Iterations); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkCount(what string, n int) error {
	if n < 1 || n > MaxPKCS12Iterations {
		return fmt.Errorf("pkcs12: %s iteration count %d outside 1..%d: %w", what, n, MaxPKCS12Iterations, ErrMalformed)
	}
	return nil
}
